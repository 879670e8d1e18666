"""7. Rejections: an unrecognized_name alert (missing_extension for a hello
without SNI, RFC 8446 9.2) before any certificate, then a close, and one
`reject ... reason=X` log line; other connections are not disturbed."""

import socket
import ssl
import subprocess

import pytest

from e2e_util import peer_re, read_answer, recv_all, tls_connect

CASES = [
    # (sni, port, reason); the alert is unrecognized_name unless ALERT says
    ("nope.vm.test", 3000, "unknown_vm"),
    ("x.example.com", 3000, "unknown_domain"),
    ("vm1.vm.test", 9000, "port_denied"),
    (None, 3000, "no_sni"),
    ("a.vm1.vm.test", 3000, "unknown_domain"),
]


# The alert each reason gets, as OpenSSL names it and by its number.
ALERT = {"no_sni": ("missing extension", 109)}
DEFAULT_ALERT = ("unrecognized name", 112)


def saw_alert(out, reason):
    """openssl s_client's words for the alert |reason| gets: "alert
    unrecognized name" (1.1) or "tlsv1 unrecognized name ... SSL alert number
    112" (3.0)."""
    words, number = ALERT.get(reason, DEFAULT_ALERT)
    return "alert " + words in out or (
        words in out and "alert number %d" % number in out)


def python_attempt(certs, sni, port):
    """Returns (local_port, exception) for a handshake that must fail."""
    ctx = certs.client_ctx()
    if sni is None:
        ctx.check_hostname = False
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    lport = raw.getsockname()[1]
    try:
        s = ctx.wrap_socket(raw, server_hostname=sni)
    except (ssl.SSLError, OSError) as e:
        raw.close()
        return lport, e
    s.close()
    return lport, None


@pytest.mark.parametrize("sni,port,reason", CASES, ids=[c[2] + "-" + str(c[0]) for c in CASES])
def test_reject_python(live_gate, certs, sni, port, reason):
    mark = live_gate.mark()
    lport, err = python_attempt(certs, sni, port)
    assert err is not None, "handshake to %s:%d succeeded; expected a reject\n%s" % (
        sni, port, live_gate.tail(since=mark))
    words = ALERT.get(reason, DEFAULT_ALERT)[0]
    assert isinstance(err, ssl.SSLError) and (
        words.replace(" ", "_").upper() in str(err).upper() or words in str(err)), (
        "expected a %s alert, got %r" % (words, err), live_gate.tail(since=mark))
    live_gate.wait_log(r"WARN reject .*%s.*reason=%s\b" % (peer_re(lport), reason),
                       timeout=5, since=mark)


@pytest.mark.parametrize("sni,port,reason", CASES[:4], ids=[c[2] for c in CASES[:4]])
def test_reject_openssl_no_certificate(live_gate, certs, sni, port, reason):
    """openssl s_client sees the alert and no certificate at all."""
    mark = live_gate.mark()
    argv = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-CAfile", certs.ca]
    argv += ["-noservername"] if sni is None else ["-servername", sni]
    r = subprocess.run(argv, input="", capture_output=True, text=True, timeout=15)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert saw_alert(out, reason), (out, live_gate.tail(since=mark))
    assert "BEGIN CERTIFICATE" not in out and "Server certificate" not in out, out
    assert "no peer certificate available" in out, out
    live_gate.wait_log(r"WARN reject .*reason=%s\b" % reason, timeout=5, since=mark)


def test_bad_host_sni(live_gate, certs):
    mark = live_gate.mark()
    r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:3000",
                        "-servername", "bad_name!.vm.test"],
                       input="", capture_output=True, text=True, timeout=15)
    out = r.stdout + r.stderr
    assert saw_alert(out, "bad_host"), (out, live_gate.tail(since=mark))
    live_gate.wait_log(r"WARN reject .*reason=bad_host\b", timeout=5, since=mark)


def test_not_tls(live_gate):
    """Plain HTTP on a TLS port: a short plain-text 400 saying the port
    speaks TLS, then a close; logged as not_tls. Nothing reaches the VM."""
    mark = live_gate.mark()
    s = socket.create_connection(("127.0.0.1", 3000), timeout=10)
    lport = s.getsockname()[1]
    s.sendall(b"GET /health HTTP/1.1\r\nHost: vm1.vm.test\r\n\r\n")
    got, how = read_answer(s, timeout=10)
    if how == "timeout":
        raise AssertionError("gate did not close a non-TLS connection in 10 s\n" +
                             live_gate.tail(since=mark))
    s.close()
    assert got.startswith(b"HTTP/1.1 400 Bad Request\r\n"), got
    assert b"speaks TLS" in got and b"https://" in got, got
    assert b"ok vm1" not in got, got
    live_gate.wait_log(r"WARN reject .*%s.*reason=not_tls\b" % peer_re(lport),
                       timeout=5, since=mark)


def test_not_tls_split_request_line(live_gate):
    """A request line whose method comes in a segment of its own ("GE",
    then the rest, as from a slow client) gets the same 400 as one sent
    whole: whether the bytes are HTTP waits for the space. (It was closed
    without a word.)"""
    from e2e_util import tcp_sockets, wait_until
    mark = live_gate.mark()
    s = socket.create_connection(("127.0.0.1", 3000), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    lport = s.getsockname()[1]
    s.sendall(b"GE")
    # the gate has read the two bytes (its socket holds none unread)
    assert wait_until(lambda: [x for x in tcp_sockets("dport = :%d" % lport)
                               if x[1] == 0], 5)
    s.sendall(b"T /health HTTP/1.1\r\nHost: vm1.vm.test\r\n\r\n")
    got, how = read_answer(s, timeout=10)
    s.close()
    assert got.startswith(b"HTTP/1.1 400 Bad Request\r\n"), (got, how,
                                                            live_gate.tail(since=mark))
    live_gate.wait_log(r"WARN reject .*%s.*reason=not_tls\b.*plain HTTP" % peer_re(lport),
                       timeout=5, since=mark)


def test_port_9000_allowed_on_other_domain(live_gate, certs):
    """Control for port_denied: the same VM and port through other.test
    (no allowlist) reaches the echo on vm1:9000."""
    with tls_connect(certs.client_ctx(), "vm1.other.test", 9000) as s:
        s.sendall(b"via other.test")
        s.settimeout(5)
        assert s.recv(100) == b"via other.test", live_gate.tail()


def test_rejects_do_not_disturb_others(live_gate, certs):
    s = tls_connect(certs.client_ctx(), "vm1.vm.test", 8080)
    s.settimeout(5)
    try:
        for i in range(30):
            sni, port, _ = CASES[i % len(CASES)]
            python_attempt(certs, sni, port)
            msg = b"alive %d" % i
            s.sendall(msg)
            got = recv_all(s, limit=len(msg))
            assert len(got) >= len(msg), ("established connection closed during rejects\n" +
                                          live_gate.tail())
            assert got == msg
    finally:
        s.close()


def test_reject_alert_bytes(live_gate, certs):
    """On the wire: a real ClientHello for an unknown VM gets exactly one
    fatal unrecognized_name alert record (15 03 0x 00 02 02 70), then EOF."""
    ctx = certs.client_ctx()
    out = ssl.MemoryBIO()
    obj = ctx.wrap_bio(ssl.MemoryBIO(), out, server_hostname="nope.vm.test")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    s = socket.create_connection(("127.0.0.1", 3000), timeout=10)
    s.sendall(out.read())
    got, how = read_answer(s, timeout=10)
    assert how != "timeout", ("no close after the alert", got, live_gate.tail())
    s.close()
    assert len(got) == 7 and got[:2] == b"\x15\x03" and got[3:] == b"\x00\x02\x02\x70", (
        "expected one fatal unrecognized_name alert record, got %r" % got, live_gate.tail())


@pytest.mark.timeout(60)
def test_reject_lines_rate_limited(private_gate, certs, fleet):
    """A flood of strangers is not a blocking log write each: at most 100
    reject lines a second per worker, then one line counting the rest
    (the metrics count every one); each reject still gets its answer."""
    from e2e_net import free_ports
    from e2e_util import gate_metric
    port = free_ports(1)[0]
    g = private_gate("rejflood", [port], workers=1,
                     port_map="{ %d: 3000 }" % port, allowed_ports="[%d]" % port)
    mark = g.mark()
    before = gate_metric(g, 'vmgate_rejects_total{reason="not_tls"}') or 0
    # 300 at once, bytes on all, then their answers: well within a second
    n = 300
    socks = [socket.create_connection(("127.0.0.1", port), timeout=5)
             for _ in range(n)]
    try:
        for s in socks:
            s.sendall(b"\x00\x01\x02\x03 not tls\r\n")
        for s in socks:
            s.settimeout(5)
            assert recv_all(s) is not None
    finally:
        for s in socks:
            s.close()
    # the count of what was left out comes with the next reject after
    # its second
    lines = lambda: [l for l in g.tail(since=mark).splitlines() if " reject " in l]
    def flushed():
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"\x00 not tls\r\n")
            recv_all(s)
        return any("suppressed=" in l for l in lines())
    from e2e_util import wait_until
    assert wait_until(flushed, 10, step=0.3), lines()[-5:]
    ls = lines()
    logged = [l for l in ls if "reason=not_tls" in l]
    dropped = sum(int(l.split("suppressed=")[1].split(":")[0])
                  for l in ls if "suppressed=" in l)
    after = gate_metric(g, 'vmgate_rejects_total{reason="not_tls"}')
    assert len(logged) < n, len(logged)
    assert len(logged) + dropped <= after - before, (len(logged), dropped, after, before)
    assert after - before >= n, (after, before)
