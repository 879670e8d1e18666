"""8. A VM that refuses, one that listens on 0.0.0.0 only, one that never
answers: the client's connection is closed without application data, and
vmgate logs connect_error with errno (and the '::' hint on ECONNREFUSED)."""

import socket
import ssl
import time

import pytest

from conftest import UUID_VM
from e2e_net import free_ports
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


@pytest.mark.timeout(30)
def test_handshake_timeout_while_connecting_is_a_connect_error(private_gate,
                                                              certs, fleet):
    """limits.handshake_timeout_ms shorter than connect_timeout_ms (or a slow
    handshake that leaves less of it): when it runs out while the VM's
    connect is still running, what is late is the VM. A connect_error line
    names it, with errno 110 and a hint naming the handshake timeout, and
    the client gets its alert, at the handshake timeout; it was a silent
    close with reason=handshake_timeout and no line about the VM."""
    port = free_ports(1)[0]
    g = private_gate("hsconn", [port], vms=("vm1", "ghost"),
                     port_map="{ %d: 3000 }" % port,
                     allowed_ports="[%d]" % port,
                     extra_limits={"handshake_timeout_ms": 1500,
                                   "connect_timeout_ms": 8000})
    mark = g.mark()
    lport, data, how, secs = attempt(certs, "ghost.vm.test", port, 8)
    assert data == b"" and how != "timeout", (data, how, secs, g.tail(since=mark))
    assert 1.2 <= secs <= 5, ("closed after %.2fs; handshake_timeout is 1.5s"
                              % secs, g.tail(since=mark))
    line = g.wait_log(r"WARN connect_error .*%s" % peer_re(lport),
                      timeout=5, since=mark)[0]
    kv = parse_kv(line)
    assert kv.get("vm") == "ghost" and kv.get("errno") == "110", line
    assert "handshake_timeout_ms" in kv.get("hint", ""), line
    assert kv.get("addr") == "[%s]:3000" % fleet.addr("ghost"), line
    # the connect_error is the connection's one line (as for any failed
    # connect): no close with reason=handshake_timeout
    assert "reason=handshake_timeout" not in g.tail(since=mark)
