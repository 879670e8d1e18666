"""8. A VM that refuses, one that listens on 0.0.0.0 only, one that never
answers: the client's connection is closed without application data, and
vmgate logs connect_error with errno (and the '::' hint on ECONNREFUSED)."""

import socket
import ssl
import time

import pytest

from conftest import UUID_VM
from e2e_util import parse_kv, peer_re

CONNECT_TIMEOUT = 1.5  # limits.connect_timeout_ms in the generated config


def attempt(certs, host, port, budget):
    """Connect, send a request, read: returns (local_port, data, how, secs)."""
    t0 = time.monotonic()
    raw = socket.create_connection(("127.0.0.1", port), timeout=budget)
    lport = raw.getsockname()[1]
    data = b""
    try:
        s = certs.client_ctx().wrap_socket(raw, server_hostname=host)
    except (ssl.SSLError, OSError) as e:
        raw.close()
        return lport, data, "handshake:%r" % e, time.monotonic() - t0
    how = "eof"
    try:
        s.sendall(b"hello?\n")
        while True:
            d = s.recv(4096)
            if not d:
                break
            data += d
    except socket.timeout:
        how = "timeout"
    except (ssl.SSLError, OSError) as e:
        how = "error:%r" % e
    s.close()
    return lport, data, how, time.monotonic() - t0


@pytest.mark.parametrize("port,what", [(3000, "nothing listening"),
                                       (8443, "backend bound to 0.0.0.0 only")])
def test_vm_refuses(live_gate, certs, fleet, port, what):
    mark = live_gate.mark()
    lport, data, how, secs = attempt(certs, UUID_VM + ".vm.test", port, CONNECT_TIMEOUT + 5)
    assert data == b"" and how != "timeout", (
        "%s: expected a close without data, got %r (%s) after %.1fs" % (what, data, how, secs),
        live_gate.tail(since=mark))
    line = live_gate.wait_log(r"WARN connect_error .*%s" % peer_re(lport),
                              timeout=5, since=mark)[0]
    kv = parse_kv(line)
    assert kv.get("vm") == UUID_VM, line
    assert kv.get("addr") == "[%s]:%d" % (fleet.addr(UUID_VM), port), line
    assert kv.get("errno") == "111", line
    assert "listen on '::'" in kv.get("hint", ""), line


@pytest.mark.timeout(30)
def test_vm_unreachable_times_out(live_gate, certs, fleet):
    mark = live_gate.mark()
    lport, data, how, secs = attempt(certs, "ghost.vm.test", 3000, CONNECT_TIMEOUT + 8)
    assert data == b"" and how != "timeout", (
        "expected a close without data, got %r (%s) after %.1fs" % (data, how, secs),
        live_gate.tail(since=mark))
    assert CONNECT_TIMEOUT - 0.3 <= secs <= CONNECT_TIMEOUT + 5, (
        "closed after %.2fs; connect_timeout is %.1fs" % (secs, CONNECT_TIMEOUT),
        live_gate.tail(since=mark))
    line = live_gate.wait_log(r"WARN connect_error .*%s" % peer_re(lport),
                              timeout=5, since=mark)[0]
    kv = parse_kv(line)
    assert kv.get("vm") == "ghost" and kv.get("errno") == "110", line
    assert kv.get("addr") == "[%s]:3000" % fleet.addr("ghost"), line
