"""TLS 1.3 messages after the handshake: session tickets and KeyUpdate.

BoringSSL holds the NewSessionTicket and the KeyUpdate that answers
update_requested until the server next writes; a relay whose VM has not
spoken (or never does) would send neither. vmgate writes them out when the
handshake completes and after every read.
"""
import os
import ssl
import subprocess
import threading
import time

from e2e_util import BioClient

PORT = 8080          # vm1: echo
HOST = "vm1.vm.test"


def _records(sock, timeout):
    """Yields the TLS records the gate sends, one at a time, until EOF or
    |timeout| with nothing new."""
    buf = b""
    sock.settimeout(timeout)
    while True:
        while len(buf) >= 5 and len(buf) >= 5 + int.from_bytes(buf[3:5], "big"):
            n = 5 + int.from_bytes(buf[3:5], "big")
            yield buf[:n]
            buf = buf[n:]
        try:
            d = sock.recv(65536)
        except OSError:
            return
        if not d:
            return
        buf += d


def test_ticket_before_first_response(live_gate, certs):
    """A client sends its Finished and its first request in one segment: the
    NewSessionTicket comes before the VM's answer."""
    ctx = certs.client_ctx(minv=ssl.TLSVersion.TLSv1_3)
    c = BioClient(ctx, HOST, PORT)
    try:
        # The client's Finished stays in |out|, and the request joins it
        # in the same send.
        c.handshake(flush=False)
        request = b"ping-" + os.urandom(8).hex().encode()
        c.obj.write(request)
        c._flush()
        order, got = [], b""
        deadline = time.monotonic() + 10
        for rec in _records(c.sock, timeout=5):
            c.inc.write(rec)
            try:
                d = c.obj.read(65536)
            except ssl.SSLWantReadError:
                d = b""
            s = c.obj.session
            if s is not None and s.has_ticket and "ticket" not in order:
                order.append("ticket")
            if d:
                got += d
                order.append("data")
            if request in got and "ticket" in order or time.monotonic() > deadline:
                break
        assert request in got, ("no echo", order)
        assert order and order[0] == "ticket", (
            "the VM's answer came before the session ticket", order)
    finally:
        c.sock.close()


def test_ticket_with_a_silent_vm(live_gate, certs):
    """The VM never speaks first (echo): the ticket still arrives."""
    ctx = certs.client_ctx(minv=ssl.TLSVersion.TLSv1_3)
    c = BioClient(ctx, HOST, PORT)
    try:
        c.handshake()
        for rec in _records(c.sock, timeout=3):
            c.inc.write(rec)
            try:
                c.obj.read(65536)
            except ssl.SSLWantReadError:
                pass
            if c.obj.session is not None and c.obj.session.has_ticket:
                break
        assert c.obj.session is not None and c.obj.session.has_ticket, \
            "no NewSessionTicket while the VM was silent"
    finally:
        c.sock.close()


class SClient:
    """openssl s_client -msg, driven line by line; output read in a thread."""

    def __init__(self, args):
        self.p = subprocess.Popen(["openssl", "s_client"] + args, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.buf = bytearray()
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        while True:
            d = os.read(self.p.stdout.fileno(), 4096)
            if not d:
                return
            self.buf.extend(d)

    def send(self, line):
        self.p.stdin.write(line.encode())
        self.p.stdin.flush()

    def wait(self, pred, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.p.poll() is None:
            if pred(self.buf.decode(errors="replace")):
                return True
            time.sleep(0.02)
        return pred(self.buf.decode(errors="replace"))

    def close(self):
        try:
            self.p.stdin.close()
        except BrokenPipeError:
            pass
        try:
            self.p.wait(5)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        self.t.join(2)


def test_keyupdate_mid_relay(live_gate, certs):
    """openssl s_client: data, a KeyUpdate with update_requested ('K'), then
    nothing: the gate answers with its own KeyUpdate at once; then two
    KeyUpdates without ('k') in a row and more data, every line echoed."""
    sc = SClient(["-connect", "127.0.0.1:%d" % PORT, "-servername", HOST, "-tls1_3",
                  "-CAfile", certs.ca, "-msg"])
    try:
        received = "<<< TLS 1.3, Handshake [length 0005], KeyUpdate"
        assert sc.wait(lambda o: "Verify return code: 0" in o), sc.buf[-2000:]
        sc.send("first-line\n")
        assert sc.wait(lambda o: o.count("first-line") >= 1), sc.buf[-2000:]
        before = sc.buf.decode(errors="replace").count(received)
        sc.send("K\n")
        assert sc.wait(lambda o: o.count(received) > before), (
            "no KeyUpdate from the gate after update_requested",
            sc.buf.decode(errors="replace")[-2000:])
        # s_client takes a whole stdin read as one command: one line at a
        # time, each after the previous one's effect.
        sent = ">>> TLS 1.3, Handshake [length 0005], KeyUpdate"
        for n in range(2):
            mine = sc.buf.decode(errors="replace").count(sent)
            sc.send("k\n")
            assert sc.wait(lambda o: o.count(sent) > mine), sc.buf[-2000:]
        for i in range(3):
            sc.send("after-update-%d\n" % i)
            assert sc.wait(lambda o: o.count("after-update-%d" % i) >= 1), (
                "not echoed after KeyUpdates", sc.buf.decode(errors="replace")[-2000:])
    finally:
        sc.close()
