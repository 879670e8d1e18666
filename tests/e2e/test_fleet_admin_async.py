"""Fleet mode: a write through the admin API never stalls the admin API.

PUT and DELETE /vms/ID are etcd round trips; they run on the admin API's
writer thread, from a queue of 64, while the admin thread goes on
answering. One etcd member of the module's own (test_fleet's
EtcdCluster, free loopback ports) and one appliance with
fleet.etcd.timeout_ms: 2000 whose only endpoint it is. SIGSTOP on the
member makes every etcd request hang until that timeout (SIGCONT after).

- /health and /metrics answer on other connections within 0.5 s while a
  PUT waits on the stopped etcd, and that PUT then gets its 503;
- a client that closes while its PUT waits: its connection is closed at
  once, the answer dropped when the write ends, nothing leaks (fds), and
  the next requests work;
- 64 writes queued behind the running one: the next is refused at once
  with 503, Retry-After and a clear error; with etcd back the queue drains
  and the last queued write is applied and routed;
- SIGTERM with writes queued: vmgate exits cleanly within its 5 s, the
  queued writes dropped.
"""

import json
import os
import signal
import socket
import threading
import time

import pytest

from e2e_util import wait_until
from test_fleet import EtcdCluster, FleetGate, UnixHTTP

# Fleet mode is control plane (etcd, the fleet and admin threads): what it
# checks is the same in every socket mode and key path, so the runs of
# the suite after `make e2e` leave it out (E2E_AGAIN: -m 'not once').
pytestmark = pytest.mark.once

TIMEOUT_MS = 2000
QUEUE = 64


@pytest.fixture(scope="module")
def etcd1(tmp_path_factory):
    with EtcdCluster(str(tmp_path_factory.mktemp("etcd-async")), n=1) as c:
        yield c


def new_gate(gate_bin, certs, etcd1, d, name):
    g = FleetGate(gate_bin, d, certs, etcd1, name, timeout_ms=TIMEOUT_MS)
    g.start()
    wait_until(lambda: g.fleet_status()["watch"] == "watching", 10,
               what="%s watching" % name)
    return g


@pytest.fixture(scope="module")
def gate(etcd1, gate_bin, certs, fleet, tmp_path_factory):
    g = new_gate(gate_bin, certs, etcd1,
                 str(tmp_path_factory.mktemp("async-gate")), "edge-async")
    try:
        yield g
    finally:
        g.stop()


class Stopped:
    """etcd's member SIGSTOPped for the block (SIGCONT on the way out)."""

    def __init__(self, etcd):
        self.etcd = etcd

    def __enter__(self):
        self.etcd.kill(0, signal.SIGSTOP)
        # The signal stops every thread soon, not at once.
        pid = self.etcd.members[0].proc.pid
        wait_until(lambda: all(stat_state(pid, t) == "T"
                               for t in os.listdir("/proc/%d/task" % pid)),
                   2, step=0.001, what="etcd stopped")
        return self

    def __exit__(self, *exc):
        self.etcd.kill(0, signal.SIGCONT)


def stat_state(pid, tid):
    with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def metric(g, name):
    st, text = g.api("GET", "/metrics")
    assert st == 200, (st, text)
    for line in text.splitlines():
        if line.startswith(name + " "):
            return int(line.split()[1])
    raise AssertionError("no %s in /metrics" % name)


def timed(fn, *args, **kw):
    t0 = time.monotonic()
    r = fn(*args, **kw)
    return r, time.monotonic() - t0


def put_request(vid, addr):
    body = json.dumps({"address": addr}).encode()
    return (b"PUT /vms/%s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % (vid.encode(), len(body))) + body


def send_and_close(g, vid, addr):
    """A PUT whose client closes right after sending it."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(5)
        s.connect(g.unix)
        s.sendall(put_request(vid, addr))
    finally:
        s.close()


def put_raw(g, vid, addr, timeout=15):
    """status, headers, JSON body of a PUT on a connection of its own."""
    c = UnixHTTP(g.unix, timeout)
    try:
        c.request("PUT", "/vms/" + vid, body=json.dumps({"address": addr}),
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        return r.status, dict(r.getheaders()), json.loads(r.read())
    finally:
        c.close()


def running(g):
    return metric(g, "vmgate_admin_fleet_write_running") == 1


class Pending:
    """`with Pending(etcd1, g, what, fn) as p:` stops etcd, calls fn() on a
    thread of its own and waits until the writer runs it; the block then
    checks the admin API while it waits. On the way out the thread is
    joined while etcd is still stopped (fn() gets etcd's timeout), then
    etcd goes on: p.result is fn()'s value, p.seconds its time."""

    def __init__(self, etcd, g, what, fn):
        self.stopped = Stopped(etcd)
        self.g, self.what, self.fn = g, what, fn

    def run(self):
        self.result, self.seconds = timed(self.fn)

    def __enter__(self):
        self.stopped.__enter__()
        self.thread = threading.Thread(target=self.run)
        self.thread.start()
        try:
            wait_until(lambda: running(self.g), 5, step=0.02,
                       what=self.what + " on the writer")
        except BaseException:
            self.__exit__()
            raise
        return self

    def waiting(self):
        return self.thread.is_alive()

    def __exit__(self, *exc):
        self.thread.join(30)
        self.stopped.__exit__()
        assert not self.thread.is_alive(), self.what + " never answered"


def test_health_answers_while_a_write_waits_on_etcd(etcd1, gate, vm1):
    g = gate
    with Pending(etcd1, g, "the PUT", lambda: put_raw(g, "slow1", vm1)) as p:
        (st, h), took = timed(g.api, "GET", "/health", timeout=5)
        assert st == 200 and h["status"] == "ok", h
        assert took < 0.5, "/health took %.3f s behind a pending PUT" % took
        (st, _), took_m = timed(g.api, "GET", "/metrics", timeout=5)
        assert st == 200 and took_m < 0.5, took_m
        (st, _), took_l = timed(g.api, "GET", "/vms", timeout=5)
        assert st == 200 and took_l < 0.5, took_l
        assert p.waiting(), "the PUT did not wait on the stopped etcd"
        print("/health %.1f ms, /metrics %.1f ms, GET /vms %.1f ms while a PUT "
              "waited on etcd" % (took * 1e3, took_m * 1e3, took_l * 1e3))
    st, hdrs, j = p.result
    # The same answer as a synchronous write gave: etcd unreachable.
    assert st == 503, (st, j)
    assert hdrs.get("Retry-After") == "1", hdrs
    assert "etcd" in j["error"], j
    assert p.seconds >= TIMEOUT_MS / 1000 * 0.9, p.seconds
    # etcd back: a PUT succeeds and routes, as before.
    wait_until(lambda: g.api("PUT", "/vms/slow1", {"address": vm1})[0] in (200, 201),
               15, step=0.1, what="PUT with etcd back")
    wait_until(lambda: g.routes("slow1"), 5, what="slow1 routed")
    st, j = g.api("DELETE", "/vms/slow1")
    assert st == 200 and j == {"deleted": "slow1"}, (st, j)
    assert not g.routes("slow1")


def test_get_fleet_waits_on_the_writer_not_the_admin_thread(etcd1, gate):
    """GET /fleet lists the other appliances from etcd: with etcd stopped it
    waits (on the writer thread) while /health answers, then answers 200
    with why the list is missing in "appliances_error"."""
    g = gate
    wait_until(lambda: not running(g), 30, what="writer idle")
    with Pending(etcd1, g, "GET /fleet",
                 lambda: g.api("GET", "/fleet", timeout=15)) as p:
        (st, h), took = timed(g.api, "GET", "/health", timeout=5)
        assert st == 200 and took < 0.5, (st, took)
        assert p.waiting(), "GET /fleet did not wait on the stopped etcd"
    st, j = p.result
    assert st == 200, (st, j)
    assert j["appliance_id"] == "edge-async", j
    assert j["appliances"] is None and "etcd" in j["appliances_error"], j
    assert p.seconds >= TIMEOUT_MS / 1000 * 0.9, p.seconds


def test_client_gone_while_its_write_waits(etcd1, gate, vm1):
    g = gate
    wait_until(lambda: metric(g, "vmgate_admin_fleet_write_running") == 0, 30,
               what="writer idle")
    fds = g.fd_count()
    since = g.mark()
    with Stopped(etcd1):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.settimeout(5)
            s.connect(g.unix)
            s.sendall(put_request("gone1", vm1))
            wait_until(lambda: running(g), 5, step=0.02, what="the PUT on the writer")
        finally:
            s.close()
        g.wait_log(r"path=/vms/gone1 status=- .*client closed the connection while "
                   r"its write waited", timeout=2, since=since)
        st, h = g.api("GET", "/health", timeout=2)
        assert st == 200, h
        # The write ends (etcd unreachable) with nobody to answer.
        g.wait_log(r"admin_write_dropped method=PUT vm=gone1 ", timeout=10, since=since)
    assert g.alive()
    wait_until(lambda: g.api("PUT", "/vms/gone2", {"address": vm1})[0] in (200, 201),
               15, step=0.1, what="PUT after the dropped one")
    assert g.api("GET", "/vms/gone2")[0] == 200
    assert g.api("DELETE", "/vms/gone2")[0] == 200
    wait_until(lambda: g.fd_count() <= fds, 5, what="fds back to %d" % fds)


def test_queue_full_refused_then_drained(etcd1, gate, vm1):
    g = gate
    wait_until(lambda: metric(g, "vmgate_admin_fleet_write_running") == 0, 30,
               what="writer idle")
    refused = metric(g, "vmgate_admin_fleet_writes_refused_total")
    ids = ["q%d" % i for i in range(QUEUE + 1)]
    with Stopped(etcd1):
        # One running, 64 queued; their clients gone (the writes still
        # happen), so more than 64 connections' worth can be queued. One
        # at a time: 64 closing at once would fill the admin's 64
        # connection slots.
        for i, vid in enumerate(ids):
            send_and_close(g, vid, vm1)
            wait_until(lambda: metric(g, "vmgate_admin_fleet_writes_queued") == i and
                       running(g), 5, step=0.005, what="%s queued" % vid)
        (st, hdrs, j), took = timed(put_raw, g, "over", vm1)
        assert st == 503, (st, j)
        assert hdrs.get("Retry-After") == "1", hdrs
        assert j == {"error": "busy: 64 requests already wait for etcd; retry"}, j
        assert took < 0.5, took
        assert metric(g, "vmgate_admin_fleet_writes_refused_total") == refused + 1
        (st, _), took = timed(g.api, "GET", "/health", timeout=5)
        assert st == 200 and took < 0.5, took
    # etcd back: the queue drains in order; the last one queued ran after
    # SIGCONT and is applied.
    wait_until(lambda: metric(g, "vmgate_admin_fleet_writes_queued") == 0 and
               not running(g), 60, step=0.2, what="queue drained")
    have = etcd1.vms()
    assert ids[-1] in have, sorted(have)
    assert "over" not in have
    wait_until(lambda: g.routes(ids[-1]), 5, what="the last queued write routed")
    print("%d of %d queued writes applied once etcd was back"
          % (sum(v in have for v in ids), len(ids)))
    etcd1.clean_vms()


def test_stop_with_writes_queued(etcd1, gate_bin, certs, fleet, vm1, tmp_path):
    g = new_gate(gate_bin, certs, etcd1, str(tmp_path / "stopgate"), "edge-stop")
    try:
        with Stopped(etcd1):
            for i in range(5):
                send_and_close(g, "st%d" % i, vm1)
                wait_until(lambda: metric(g, "vmgate_admin_fleet_writes_queued") == i and
                           running(g), 5, step=0.005, what="st%d queued" % i)
            t0 = time.monotonic()
            rc = g.stop()
            took = time.monotonic() - t0
        assert rc == 0, (rc, g.tail())
        # The running write ends within its etcd timeout; the queued ones
        # are not started.
        assert took < TIMEOUT_MS / 1000 + 2, took
        assert not g.find(r"vm_put vm=st[1-4] ")
    finally:
        g.stop()
