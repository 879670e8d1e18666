"""Failure behaviour beyond the brief's list (DESIGN.md "Failure behaviour"):
malformed and oversized ClientHellos, silent and stalled clients (handshake
timeout), and a burst of scanner-like connections that must not disturb
anything else."""

import os
import socket
import ssl
import time

import pytest

from e2e_util import peer_re, read_answer, recv_all, tls_connect

HANDSHAKE_TIMEOUT = 5.0  # limits.handshake_timeout_ms in the generated config


def raw_exchange(payload, port=3000, budget=10.0):
    """Send |payload|, read until the gate closes. -> (local_port, data, secs, how)"""
    t0 = time.monotonic()
    s = socket.create_connection(("127.0.0.1", port), timeout=budget)
    lport = s.getsockname()[1]
    if payload:
        s.sendall(payload)
    data, how = read_answer(s, timeout=budget)
    s.close()
    return lport, data, time.monotonic() - t0, how


def client_hello(sni="vm1.vm.test"):
    """The bytes of a real ClientHello (python's), captured via MemoryBIO."""
    ctx = ssl.create_default_context()
    obj = ctx.wrap_bio(ssl.MemoryBIO(), out := ssl.MemoryBIO(), server_hostname=sni)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def test_bad_hello(live_gate):
    mark = live_gate.mark()
    # a handshake record that holds a ServerHello (type 2), not a ClientHello
    lport, data, secs, how = raw_exchange(b"\x16\x03\x01\x00\x08\x02\x00\x00\x04\x03\x03\x00\x00")
    assert how != "timeout", ("gate kept a malformed hello open", live_gate.tail(since=mark))
    assert not data or data[0] == 0x15, data  # an alert or nothing
    live_gate.wait_log(r"WARN reject .*%s.*reason=bad_hello\b" % peer_re(lport),
                       timeout=5, since=mark)


def test_truncated_hello_garbage(live_gate):
    """A ClientHello whose inner lengths run past the message."""
    mark = live_gate.mark()
    body = b"\x01\x00\x00\x2e" + b"\x03\x03" + b"\xff" * 44  # session_id len 255 > rest
    lport, data, secs, how = raw_exchange(b"\x16\x03\x01" + len(body).to_bytes(2, "big") + body)
    assert how != "timeout", live_gate.tail(since=mark)
    live_gate.wait_log(r"WARN reject .*%s.*reason=bad_hello\b" % peer_re(lport),
                       timeout=5, since=mark)


def test_too_large_hello(live_gate):
    mark = live_gate.mark()
    # record claims a 16 MiB handshake message
    hdr = b"\x16\x03\x01\x40\x00" + b"\x01\xff\xff\xff" + b"\x03\x03"
    lport, data, secs, how = raw_exchange(hdr + os.urandom(16384 - 6))
    assert how != "timeout", live_gate.tail(since=mark)
    live_gate.wait_log(r"WARN reject .*%s.*reason=too_large\b" % peer_re(lport),
                       timeout=5, since=mark)


@pytest.mark.slow
@pytest.mark.timeout(30)
@pytest.mark.parametrize("what", ["silent", "partial-hello", "after-hello"])
def test_handshake_timeout(live_gate, certs, what):
    """A client that stalls is closed after handshake_timeout, not kept."""
    if what == "silent":
        payload = b""
    elif what == "partial-hello":
        payload = client_hello()[:60]
    else:
        # a complete ClientHello, then nothing (the handshake never finishes)
        payload = client_hello()
    lport, data, secs, how = raw_exchange(payload, budget=HANDSHAKE_TIMEOUT + 8)
    assert how != "timeout", ("%s client still open after %.1fs" % (what, secs),
                              live_gate.tail())
    assert HANDSHAKE_TIMEOUT - 0.5 <= secs <= HANDSHAKE_TIMEOUT + 4, (
        "%s client closed after %.2fs; handshake_timeout is %.1fs" % (what, secs,
                                                                      HANDSHAKE_TIMEOUT),
        live_gate.tail())


@pytest.mark.timeout(60)
def test_scan_burst_does_not_disturb(live_gate, certs):
    """300 connect-and-close, 100 junk senders and 50 half ClientHellos closed
    early, while an established connection keeps echoing."""
    s = tls_connect(certs.client_ctx(), "vm2.vm.test", 8080)
    s.settimeout(5)
    hello = client_hello("vm2.vm.test")
    try:
        for i in range(450):
            c = socket.create_connection(("127.0.0.1", [3000, 8080, 443][i % 3]), timeout=5)
            if 300 <= i < 400:
                c.sendall(os.urandom(200))
            elif i >= 400:
                c.sendall(hello[:len(hello) // 2])
            c.close()
            if i % 50 == 0:
                s.sendall(b"ping%d" % i)
                want = b"ping%d" % i
                got = recv_all(s, limit=len(want))
                assert len(got) >= len(want), "established connection closed during the burst\n" + \
                    live_gate.tail()
                assert got == want
    finally:
        s.close()
    # and new connections still work
    with tls_connect(certs.client_ctx(), "vm1.vm.test", 8080) as t:
        t.settimeout(5)
        t.sendall(b"after")
        assert t.recv(10) == b"after", live_gate.tail()
