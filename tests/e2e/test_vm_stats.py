"""Issue 15 item 5: per-VM accounting.

A vmgate of its own (fresh counters: exact figures) with metrics.per_vm
and a cap of 2 series: known byte counts through vm1 and vm2 (echo on VM
port 8080) must show in GET /vms/ID/stats and GET /stats/vms?top=N exactly
as the client sent and received them; an open connection counts as open
until it is closed; a refused port counts as vm1's rejection; a refused
connect as the UUID VM's connect error; an unknown VM is counted nowhere.
The per-VM Prometheus series are there for the 2 VMs with the most bytes
and say how many were dropped. The shared gate (no metrics: section)
serves the same API without per-VM series.

Counters are stored by the workers and read by the admin thread: every
check polls with a deadline.
"""

import json
import os
import re
import socket
import ssl

import pytest

from conftest import UUID_VM
from e2e_net import free_ports
from e2e_util import recv_all, tls_connect, wait_until



def admin_get(sock_path, url):
    """(status, body) of GET |url| on the admin API's unix socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(sock_path)
        s.sendall(b"GET %s HTTP/1.1\r\nHost: gate\r\nConnection: close\r\n\r\n"
                  % url.encode())
        data = recv_all(s)
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def admin_json(sock_path, url, want_status=200):
    status, body = admin_get(sock_path, url)
    assert status == want_status, "%s: %d %r" % (url, status, body[:300])
    return json.loads(body)


def stats_reach(sock_path, vid, want, what, timeout=5.0):
    """Polls GET /vms/|vid|/stats until its counters are |want|; fails
    with the last ones."""
    last = {}

    def now():
        last.clear()
        last.update(counters(admin_json(sock_path, "/vms/%s/stats" % vid)))
        return last == want
    assert wait_until(now, timeout), "%s: got %r, want %r" % (what, last, want)


def echo(conn, size):
    """|size| random bytes through an echo connection and back; returns
    how many bytes were sent and received."""
    payload = os.urandom(size)
    conn.sendall(payload)
    got = recv_all(conn, limit=size, timeout=10)
    assert got == payload, "echo returned %d different bytes" % len(got)
    return len(payload), len(got)


FIELDS = ("accepted", "rejected", "open", "bytes_client_to_vm",
          "bytes_vm_to_client", "connect_errors")


def counters(j):
    return {k: j[k] for k in FIELDS}


@pytest.fixture
def stats_gate(private_gate, certs):
    """Listener ports (free ones): "echo" (vm.test -> VM port 8080, echo),
    "denied" (not in vm.test's allowed_ports), "refused" (-> VM port 3000:
    nothing listens there on the UUID VM)."""
    names = ("echo", "denied", "refused")
    ports = dict(zip(names, free_ports(len(names))))
    g = private_gate("vmstats", list(ports.values()), vms=("vm1", "vm2", UUID_VM),
                     port_map="{ %d: 8080, %d: 3000 }" % (ports["echo"], ports["refused"]),
                     allowed_ports="[%d, %d]" % (ports["echo"], ports["refused"]),
                     wait_port=ports["echo"],
                     extra=["metrics:", "  per_vm: true", "  per_vm_max: 2"])
    g.port = ports
    g.sock = g.admin_socket()
    g.wait_admin()
    return g


@pytest.mark.timeout(60)
def test_vm_stats_match_client(stats_gate, certs):
    sock = stats_gate.sock
    port = stats_gate.port
    ctx = certs.client_ctx()
    sent = {"vm1": 0, "vm2": 0}
    got = {"vm1": 0, "vm2": 0}

    # vm1: two connections, one held open while the counters are read.
    held = tls_connect(ctx, "vm1.vm.test", port["echo"])
    s, r = echo(held, 3000)
    sent["vm1"] += s
    got["vm1"] += r
    with tls_connect(ctx, "vm1.vm.test", port["echo"]) as c:
        s, r = echo(c, 70001)
        sent["vm1"] += s
        got["vm1"] += r
    stats_reach(sock, "vm1",
                {"accepted": 2, "rejected": 0, "open": 1,
                 "bytes_client_to_vm": sent["vm1"],
                 "bytes_vm_to_client": got["vm1"], "connect_errors": 0},
                "vm1 while one connection is open")
    held.close()
    # vm2: more bytes than vm1, so it leads the top list.
    for size in (100000, 23456):
        with tls_connect(ctx, "vm2.vm.test", port["echo"]) as c:
            s, r = echo(c, size)
            sent["vm2"] += s
            got["vm2"] += r
    # A port vm.test does not allow: vm1's rejection, no connection.
    with pytest.raises((ssl.SSLError, ConnectionError)):
        tls_connect(ctx, "vm1.vm.test", port["denied"]).close()
    # Nothing listens on the UUID VM's port 3000: a connect error.
    with pytest.raises((ssl.SSLError, ConnectionError)):
        with tls_connect(ctx, "%s.vm.test" % UUID_VM, port["refused"]) as c:
            c.sendall(b"x")
            recv_all(c, timeout=10)
    # An unknown VM takes no entry.
    with pytest.raises((ssl.SSLError, ConnectionError)):
        tls_connect(ctx, "nope.vm.test", port["echo"]).close()

    want = {
        "vm1": {"accepted": 2, "rejected": 1, "open": 0,
                "bytes_client_to_vm": sent["vm1"],
                "bytes_vm_to_client": got["vm1"], "connect_errors": 0},
        "vm2": {"accepted": 2, "rejected": 0, "open": 0,
                "bytes_client_to_vm": sent["vm2"],
                "bytes_vm_to_client": got["vm2"], "connect_errors": 0},
        UUID_VM: {"accepted": 1, "rejected": 0, "open": 0,
                  "bytes_client_to_vm": 0, "bytes_vm_to_client": 0,
                  "connect_errors": 1},
    }
    for vid, w in want.items():
        stats_reach(sock, vid, w, "/vms/%s/stats" % vid)
    # Ids in any case are the same VM.
    j = admin_json(sock, "/vms/VM2/stats")
    assert j["id"] == "vm2" and counters(j) == want["vm2"], j

    top = admin_json(sock, "/stats/vms?top=2")
    assert top["vms_counted"] == 3, top
    assert [v["id"] for v in top["vms"]] == ["vm2", "vm1"], top
    for v in top["vms"]:
        assert counters(v) == want[v["id"]], v
    top = admin_json(sock, "/stats/vms?top=10")
    assert [v["id"] for v in top["vms"]] == ["vm2", "vm1", UUID_VM], top
    assert [v["id"] for v in admin_json(sock, "/stats/vms?top=1")["vms"]] \
        == ["vm2"]

    # Bad requests get clear errors.
    assert admin_get(sock, "/vms/nope/stats")[0] == 404
    assert admin_get(sock, "/vms/bad_id/stats")[0] == 400
    for q in ("top=0", "top=10001", "top=x", "bottom=3"):
        status, body = admin_get(sock, "/stats/vms?" + q)
        assert status == 400 and b"top=N" in body, (q, status, body)

    # Prometheus: the 2 VMs with the most bytes, the third dropped, and
    # the totals as before.
    _, m = admin_get(sock, "/metrics")
    m = m.decode()
    series = re.findall(r'^vmgate_vm_bytes_total\{vm="([^"]+)",'
                        r'direction="client_to_vm"\} (\d+)$', m, re.M)
    assert series == [("vm2", str(sent["vm2"])), ("vm1", str(sent["vm1"]))], \
        series
    assert re.search(r'^vmgate_vm_connections_rejected_total\{vm="vm1"\} 1$',
                     m, re.M), m
    assert UUID_VM not in m
    assert re.search(r"^vmgate_vm_series_dropped 1$", m, re.M), m
    assert re.search(r"^vmgate_vm_stats_lost_total 0$", m, re.M), m
    total_up = int(re.search(r'^vmgate_bytes_total\{direction="client_to_vm"\}'
                             r" (\d+)$", m, re.M).group(1))
    assert total_up == sent["vm1"] + sent["vm2"], m


def test_shared_gate_no_per_vm_series(live_gate, certs):
    """Without metrics.per_vm, /metrics has no per-VM series, and the
    stats API still counts (as a delta: the shared gate is everyone's)."""
    sock = live_gate.admin_socket()
    before = counters(admin_json(sock, "/vms/vm2/stats"))
    with tls_connect(certs.client_ctx(), "vm2.vm.test", 8080) as c:
        s, r = echo(c, 4321)
    want = dict(before)
    want["accepted"] += 1
    want["bytes_client_to_vm"] += s
    want["bytes_vm_to_client"] += r
    stats_reach(sock, "vm2", want, "vm2 on the shared gate")
    _, m = admin_get(sock, "/metrics")
    assert b"vmgate_vm_bytes_total" not in m
    assert b"vmgate_vm_series_dropped" not in m
    assert re.search(rb"^vmgate_vm_stats_lost_total 0$", m, re.M), m
