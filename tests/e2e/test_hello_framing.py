"""Every legal framing of a ClientHello is accepted (RFC 8446 5.1: a
handshake message may be fragmented into records of any non-zero size,
its 4-byte header included).

A real TLS client (Python's ssl on MemoryBIOs) makes its ClientHello; the
test takes it from the outgoing BIO, re-frames it into N-byte records,
sends those in one TCP write or in many, then lets the handshake carry on
and echoes bytes through vm1's echo service. The hello is grown to about
1 KiB and 4 KiB with a long ALPN list (the gate still picks h2), so the
bytes the client hashed are the bytes the gate saw. Before the parser kept
its progress between calls, more than 128 records was a bad_hello.

And the size limit counts what BoringSSL counts, the message body: a hello
filling one 2^14-byte record (a 16,380-byte body), and one with a
16,384-byte body (two records), get a ServerHello at the default
limits.max_clienthello_bytes; a 16,385-byte body gets decode_error.
"""
import os
import socket
import ssl

import pytest

from e2e_util import BioClient, Hello, peer_re, plaintext_alerts, read_answer

ECHO_PORT = 8080
HOST = "vm1.vm.test"
DECODE_ERROR = 50


def _alpn(extra_bytes):
    """h2 and http/1.1 behind filler names taking about |extra_bytes|."""
    names, n, i = [], 0, 0
    while n < extra_bytes:
        name = ("filler-%03d-" % i).ljust(60, "x")
        names.append(name)
        n += 1 + len(name)
        i += 1
    return names + ["h2", "http/1.1"]


def _client(certs, alpn_extra):
    ctx = certs.client_ctx()
    if alpn_extra:
        ctx.set_alpn_protocols(_alpn(alpn_extra))
    c = BioClient(ctx, HOST, ECHO_PORT)
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return c


def _reframe(first, size):
    """The records of |first| (one or more handshake records) joined and cut
    again into records of |size| bytes of fragment."""
    msg, p = b"", 0
    while p < len(first):
        assert first[p] == 0x16, first[p:p + 5]
        n = int.from_bytes(first[p + 3:p + 5], "big")
        msg += first[p + 5:p + 5 + n]
        p += 5 + n
    ver = first[1:3]
    return msg, b"".join(b"\x16" + ver + len(msg[i:i + size]).to_bytes(2, "big") +
                         msg[i:i + size] for i in range(0, len(msg), size))


def _handshake_reframed(certs, alpn_extra, size, per_write):
    """-> (hello length, records length, end of the echo read, echoed ok)."""
    c = _client(certs, alpn_extra)
    try:
        try:
            c.obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        msg, framed = _reframe(c.out.read(), size)
        step = per_write or len(framed)
        for i in range(0, len(framed), step):
            c.sock.sendall(framed[i:i + step])
        c.handshake()
        if alpn_extra:
            assert c.obj.selected_alpn_protocol() == "h2"
        data = os.urandom(5000)
        c.send(data)
        got, end = c.read(limit=len(data))
        return len(msg), len(framed), end, got == data
    finally:
        c.close()


# (name, ALPN filler bytes, hello size range, record size, bytes per write:
# None = all records in one write, else that many bytes per write)
CASES = [
    ("500B-1byte-one-write", 0, (400, 700), 1, None),
    ("500B-1byte-record-per-write", 0, (400, 700), 1, 6),
    ("500B-1byte-byte-per-write", 0, (400, 700), 1, 1),
    ("1K-1byte-one-write", 700, (1024, 1300), 1, None),
    ("1K-1byte-record-per-write", 700, (1024, 1300), 1, 6),
    ("1K-1byte-7-bytes-per-write", 700, (1024, 1300), 1, 7),
    ("4K-20byte-one-write", 3800, (4096, 4500), 20, None),
    ("4K-20byte-record-per-write", 3800, (4096, 4500), 20, 25),
    ("4K-20byte-13-bytes-per-write", 3800, (4096, 4500), 20, 13),
]


@pytest.mark.parametrize("name,alpn_extra,hello_range,size,per_write", CASES,
                         ids=[c[0] for c in CASES])
def test_reframed_hello_handshake(live_gate, certs, name, alpn_extra, hello_range,
                                  size, per_write):
    mark = live_gate.mark()
    hello_len, framed_len, end, ok = _handshake_reframed(certs, alpn_extra, size,
                                                         per_write)
    lo, hi = hello_range
    assert lo <= hello_len <= hi, ("the client's hello is %d bytes, wanted %d..%d"
                                   % (hello_len, lo, hi))
    assert framed_len == hello_len + 5 * -(-hello_len // size)
    assert ok, ("%s: %d-byte hello in %d-byte records (%d bytes): echo failed (%s)"
                % (name, hello_len, size, framed_len, end), live_gate.tail(since=mark))
    assert not live_gate.find(r"WARN reject ", since=mark), live_gate.tail(since=mark)


def _first_answer(message_len, chunk=16384):
    """Send Hello().pad(|message_len|) in |chunk|-byte records; -> (data,
    how, local port, records)."""
    records = Hello().pad(message_len).records(chunk=chunk)
    s = socket.create_connection(("127.0.0.1", ECHO_PORT), timeout=5)
    lport = s.getsockname()[1]
    try:
        s.sendall(records)
        data, how = read_answer(s, timeout=5, limit=5 + 4)
    finally:
        s.close()
    return data, how, lport, records


@pytest.mark.parametrize("body_len,records", [(16380, 1), (16384, 2)])
def test_hello_at_the_limit_gets_server_hello(live_gate, body_len, records):
    """The default limit (16384) counts the body: a hello that fills one
    2^14-byte record exactly, and the largest body BoringSSL takes."""
    mark = live_gate.mark()
    data, how, lport, framed = _first_answer(4 + body_len)
    assert len(framed) == 5 * records + 4 + body_len
    assert data[:1] == b"\x16" and data[5:6] == b"\x02", (
        "%d-byte body: expected a ServerHello, got %r (%s)" % (body_len, data[:16], how),
        live_gate.tail(since=mark))


def test_hello_body_over_the_limit(live_gate):
    """One byte more than BoringSSL's cap: decode_error, reason=too_large,
    decided on the handshake header."""
    mark = live_gate.mark()
    records = Hello().pad(4 + 16385).records(chunk=1)
    s = socket.create_connection(("127.0.0.1", ECHO_PORT), timeout=5)
    lport = s.getsockname()[1]
    try:
        # The header's four 1-byte records and a little more.
        s.sendall(records[:6 * 10])
        data, how = read_answer(s, timeout=5)
    finally:
        s.close()
    assert plaintext_alerts(data) == [(2, DECODE_ERROR)], (data[:32], how,
                                                          live_gate.tail(since=mark))
    live_gate.wait_log(r"WARN reject .*%s.*reason=too_large\b" % peer_re(lport),
                       timeout=5, since=mark)
