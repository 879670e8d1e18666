"""Issue 10 item 3: one table of close and reject reasons. Every reason the
gate logs is counted under the same name in /metrics: a VM connect that
fails is counted as vmgate_rejects_total{reason="connect_error"} (it was
logged and never counted), a client that goes away in the middle of the
handshake as closed_total{outcome="client_eof_in_handshake"} (it was folded
into client_eof), and /metrics lists every reason of the table in its family
and no catch-all "other"."""

import re
import socket
import time

from conftest import UUID_VM
from e2e_util import Hello, gate_metric, peer_re, recv_all

CLOSES = ["done", "idle_timeout", "handshake_timeout", "tls_error",
          "client_reset", "client_error", "client_eof",
          "client_eof_in_handshake", "vm_reset", "vm_error", "out_of_memory",
          "shutdown"]
REJECTS = ["no_sni", "bad_host", "unknown_domain", "unknown_vm",
           "port_denied", "not_tls", "bad_hello", "too_large",
           "no_common_sigalg", "connect_error", "max_connections",
           "max_connections_per_ip"]


def metric(g, name):
    v = gate_metric(g, name)
    return None if v is None else int(float(v))


def wait_metric(g, name, want, timeout=5.0):
    """Polls |name| until it is at least |want|; returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = metric(g, name)
        if (v is not None and v >= want) or time.monotonic() > deadline:
            return v
        time.sleep(0.05)


def drain(s):
    """Reads until the gate closes; a reset is a close too."""
    try:
        recv_all(s, timeout=5)
    except ConnectionResetError:
        pass
    s.close()


def metrics_text(g):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(g.admin_socket())
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: gate\r\n"
                  b"Connection: close\r\n\r\n")
        return recv_all(s).decode(errors="replace")


def test_every_reason_listed_in_its_family(live_gate):
    text = metrics_text(live_gate)
    outcomes = re.findall(r'^vmgate_connections_closed_total\{outcome="([^"]*)"\} \d+$',
                          text, re.M)
    reasons = re.findall(r'^vmgate_rejects_total\{reason="([^"]*)"\} \d+$',
                         text, re.M)
    assert sorted(outcomes) == sorted(CLOSES), outcomes
    assert sorted(reasons) == sorted(REJECTS), reasons


def assert_counted(g, name, port, sni, line_re, fin=False):
    """Sends a hello for |sni| to |port| (then a FIN if |fin|), waits for
    the log line matching |line_re| % the client's peer, and for the
    counter |name| to go up by one."""
    before = metric(g, name)
    assert before is not None, "no %s in /metrics" % name
    mark = g.mark()
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    lport = s.getsockname()[1]
    s.sendall(Hello(sni=sni).records())
    if fin:
        s.shutdown(socket.SHUT_WR)
    drain(s)
    g.wait_log(line_re % peer_re(lport), timeout=5, since=mark)
    got = wait_metric(g, name, before + 1)
    assert got is not None and got >= before + 1, (before, got)


def test_connect_error_counted(live_gate):
    """Nothing listens on the VM's port 3000: a connect_error line, and the
    counter of that name goes up by one."""
    assert_counted(live_gate, 'vmgate_rejects_total{reason="connect_error"}',
                   3000, UUID_VM + ".vm.test", r"WARN connect_error .*%s")


def test_client_eof_in_handshake_counted(live_gate):
    """A routed hello, then the client's FIN before its next flight: the
    close line says client_eof_in_handshake and that outcome is counted."""
    assert_counted(live_gate,
                   'vmgate_connections_closed_total{outcome="client_eof_in_handshake"}',
                   8080, "vm1.vm.test",
                   r"close .*%s.*reason=client_eof_in_handshake\b", fin=True)
