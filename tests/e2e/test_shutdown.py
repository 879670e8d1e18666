"""Issue 6 (hardening): shutdown. SIGTERM stops accepting, lets established
connections finish for up to limits.drain_timeout_ms, then closes them and
exits 0 (log `shutdown ... draining=N`); SIGINT closes everything at once.
Each test runs a private vmgate on two free ports: vm2.vm.test on
g.port["source"] -> vm2's sha source (8443), vm1.vm.test on g.port["echo"]
-> vm1's echo (8080)."""

import hashlib
import os
import signal
import socket
import ssl
import subprocess
import threading
import time

import pytest

from e2e_backend import stream_sha256
from e2e_net import free_ports
from e2e_util import listeners_on, recv_all, tls_connect, wait_until

DRAIN = 3.0   # limits.drain_timeout_ms of these gates


def start(private_gate, name, drain=DRAIN):
    source, echo = free_ports(2)
    g = private_gate(name, [source, echo], port_map="{ %d: 8443, %d: 8080 }" % (source, echo),
                     allowed_ports="[%d, %d]" % (source, echo),
                     extra_limits={"drain_timeout_ms": int(drain * 1000)})
    g.port = {"source": source, "echo": echo}
    return g


class Download(threading.Thread):
    """Reads SIZE bytes of the sha source at about |rate| bytes/s, so the
    transfer is still in flight when the test signals the gate."""

    def __init__(self, certs, port, size, rate):
        super().__init__(daemon=True)
        self.s = tls_connect(certs.client_ctx(), "vm2.vm.test", port)
        self.s.settimeout(15)
        self.size, self.rate = size, rate
        self.n, self.err, self.end = 0, None, None
        self.h = hashlib.sha256()
        self.s.sendall(b"%d 5\n" % size)

    def run(self):
        t0 = time.monotonic()
        try:
            while self.n < self.size:
                d = self.s.recv(1 << 16)
                if not d:
                    break
                self.h.update(d)
                self.n += len(d)
                ahead = self.n / self.rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
            # then the end of the stream: close_notify / EOF
            try:
                self.s.recv(1)
            except (ssl.SSLError, OSError):
                pass
        except (ssl.SSLError, OSError) as e:
            self.err = e
        self.end = time.monotonic()
        self.s.close()

    def ok(self):
        return self.n == self.size and self.h.hexdigest() == stream_sha256(5, self.size)


def refused_or_unserved(port):
    """A new client after SIGTERM: True if it is refused, reset or closed
    without being served (no TLS handshake within 3 s)."""
    try:
        raw = socket.create_connection(("127.0.0.1", port), timeout=3)
    except OSError:
        return True
    try:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.wrap_socket(raw, server_hostname="vm1.vm.test").close()
        return False
    except (ssl.SSLError, OSError):
        return True
    finally:
        raw.close()


@pytest.mark.timeout(40)
def test_sigterm_transfer_in_flight_completes(private_gate, certs, fleet):
    """SIGTERM in the middle of a 12 MiB download: no new connections, the
    download finishes byte-exact, then vmgate exits 0 without waiting for
    the rest of the drain timeout."""
    g = start(private_gate, "drain1", drain=15.0)
    size = 12 << 20
    dl = Download(certs, g.port["source"], size, rate=6 << 20)       # about 2 s
    dl.start()
    while dl.n < (2 << 20) and dl.is_alive():
        time.sleep(0.02)
    assert dl.is_alive() and dl.n < size, "the download ended before SIGTERM"
    mark = g.mark()
    t_sig = time.monotonic()
    os.kill(g.proc.pid, signal.SIGTERM)
    line = g.wait_log(r"shutdown .*draining=\d+", timeout=3, since=mark)[0]
    assert "draining=1" in line, line
    # workers stop accepting within one tick (100 ms) of the signal
    assert wait_until(lambda: refused_or_unserved(g.port["echo"]), 3), (
        "a new connection was served after SIGTERM", g.tail(since=mark))
    dl.join(20)
    assert dl.ok(), ("transfer in flight at SIGTERM: %d of %d bytes, sha %s, error %r"
                     % (dl.n, size, "ok" if dl.ok() else "bad", dl.err), g.tail(since=mark))
    try:
        rc = g.proc.wait(5)
    except subprocess.TimeoutExpired:
        raise AssertionError("vmgate still running 5 s after its last connection ended "
                             "(drain timeout 15 s)\n" + g.tail(since=mark))
    exit_after = time.monotonic() - t_sig
    assert rc == 0, ("exit status %s after SIGTERM" % rc, g.tail(since=mark))
    assert exit_after < 10, exit_after
    print("\nSIGTERM drain: download finished %.2fs after the signal, exit %.2fs after"
          % (dl.end - t_sig, exit_after))


@pytest.mark.timeout(40)
def test_sigterm_drain_timeout_closes(private_gate, certs, fleet):
    """A connection that does not finish keeps working during the drain and
    is closed at drain_timeout (3 s); exit status 0."""
    g = start(private_gate, "drain2")
    s = tls_connect(certs.client_ctx(), "vm1.vm.test", g.port["echo"])
    s.settimeout(DRAIN + 5)
    s.sendall(b"before")
    assert s.recv(100) == b"before"
    mark = g.mark()
    t_sig = time.monotonic()
    os.kill(g.proc.pid, signal.SIGTERM)
    g.wait_log(r"shutdown .*draining=1\b", timeout=3, since=mark)
    # in the drain: the listeners are gone, this connection stays
    assert wait_until(lambda: not listeners_on([g.port["echo"]]), 3), (
        "listeners still open during the drain", g.tail(since=mark))
    s.sendall(b"during the drain")
    got = s.recv(100)
    assert got == b"during the drain", ("an established connection stopped working "
                                        "during the drain: %r" % got, g.tail(since=mark))
    try:
        recv_all(s)
    except (ssl.SSLError, OSError):
        pass
    closed_after = time.monotonic() - t_sig
    s.close()
    try:
        rc = g.proc.wait(5)
    except subprocess.TimeoutExpired:
        raise AssertionError("vmgate still running after the drain timeout\n" +
                             g.tail(since=mark))
    assert DRAIN - 0.5 <= closed_after <= DRAIN + 2.5, (
        "connection closed %.2fs after SIGTERM; drain_timeout %.1fs" % (closed_after, DRAIN),
        g.tail(since=mark))
    assert rc == 0, ("exit status %s" % rc, g.tail(since=mark))


@pytest.mark.timeout(30)
def test_sigterm_idle_gate_exits_at_once(private_gate, certs, fleet):
    g = start(private_gate, "drain3", drain=20.0)
    t0 = time.monotonic()
    os.kill(g.proc.pid, signal.SIGTERM)
    try:
        rc = g.proc.wait(5)
    except subprocess.TimeoutExpired:
        raise AssertionError("vmgate with no connections still running 5 s after "
                             "SIGTERM\n" + g.tail())
    assert rc == 0 and time.monotonic() - t0 < 3, (rc, g.tail())


@pytest.mark.timeout(30)
def test_sigint_closes_now(private_gate, certs, fleet):
    """SIGINT: the download in flight and an idle relay are closed at once
    (no drain), vmgate exits promptly."""
    g = start(private_gate, "sigint", drain=20.0)
    idle = tls_connect(certs.client_ctx(), "vm1.vm.test", g.port["echo"])
    idle.settimeout(5)
    dl = Download(certs, g.port["source"], 64 << 20, rate=4 << 20)
    dl.start()
    while dl.n < (1 << 20) and dl.is_alive():
        time.sleep(0.02)
    mark = g.mark()
    t_sig = time.monotonic()
    os.kill(g.proc.pid, signal.SIGINT)
    try:
        rc = g.proc.wait(3)
    except subprocess.TimeoutExpired:
        raise AssertionError("vmgate still running 3 s after SIGINT\n" + g.tail(since=mark))
    dl.join(5)
    closed = False
    try:
        closed = idle.recv(10) == b""
    except (ssl.SSLError, OSError):
        closed = True
    idle.close()
    assert time.monotonic() - t_sig < 4
    assert not dl.ok() and dl.n < (64 << 20), "the download was not cut by SIGINT"
    assert dl.end is not None and dl.end - t_sig < 3, "download not closed promptly"
    assert closed, "idle relay not closed by SIGINT"
    assert rc in (0, 130), ("exit status %s after SIGINT (killed by the signal?)" % rc,
                            g.tail(since=mark))
