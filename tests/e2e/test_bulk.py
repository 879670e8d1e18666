"""5. Byte-exact relay of 100 MiB each way, checked with SHA-256, and the
byte counts in vmgate's close log line."""

import array
import fcntl
import hashlib
import termios

import pytest

from e2e_backend import stream_chunks, stream_sha256
from e2e_util import BioClient, parse_kv, peer_re, wait_until

SIZE = 100 << 20


@pytest.mark.slow
@pytest.mark.timeout(120)

class HashSink:
    """Counts and hashes what a BioClient reads."""

    def __init__(self):
        self.h = hashlib.sha256()
        self.n = 0

    def __call__(self, d):
        self.n += len(d)
        self.h.update(d)

def test_upload_100mib(live_gate, certs):
    mark = live_gate.mark()  # the client's port may have been used before
    c = BioClient(certs.client_ctx(), "vm2.vm.test", 3000, timeout=60)
    c.handshake()
    h = hashlib.sha256()
    for chunk in stream_chunks(11, SIZE):
        h.update(chunk)
        c.send(chunk)
    c.shutdown_tcp_write()
    got, end = c.read(limit=1000)
    c.close()
    assert got.decode().strip() == h.hexdigest(), (
        "sha sink saw different bytes (got %r, end=%s)" % (got, end), live_gate.tail())
    line = live_gate.wait_log(r"INFO close .*%s" % peer_re(c.local_port), timeout=10,
                              since=mark)[0]
    kv = parse_kv(line)
    assert kv.get("vm") == "vm2" and kv.get("vm_port") == "3000", line
    assert int(kv["up"]) == SIZE and int(kv["down"]) == 65, line


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_download_100mib(live_gate, certs):
    want = stream_sha256(12, SIZE)
    mark = live_gate.mark()
    c = BioClient(certs.client_ctx(), "vm2.vm.test", 8443, timeout=60)
    c.handshake()
    c.send(b"%d 12\n" % SIZE)
    sink = HashSink()
    _, end = c.read(sink=sink)
    c.close()
    n, h = sink.n, sink.h
    assert n == SIZE, ("short download: %d of %d bytes, end=%s" % (n, SIZE, end),
                       live_gate.tail())
    assert h.hexdigest() == want, "downloaded bytes differ"
    assert end in ("close_notify", "eof"), end
    line = live_gate.wait_log(r"INFO close .*%s" % peer_re(c.local_port), timeout=10,
                              since=mark)[0]
    kv = parse_kv(line)
    assert int(kv["down"]) == SIZE and int(kv["up"]) == len(b"%d 12\n" % SIZE), line


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_backpressure_slow_reader(live_gate, certs):
    """A client that stops reading while the VM sends 200 MiB: vmgate's
    memory must stay bounded (it stops reading from the VM), and every byte
    still arrives once the client reads again."""
    size = 200 << 20
    want = stream_sha256(13, size)
    c = BioClient(certs.client_ctx(), "vm2.vm.test", 8443, timeout=60)
    c.handshake()
    rss0 = live_gate.rss_kib()
    c.send(b"%d 13\n" % size)
    # not reading: the kernel buffers fill (the client's receive queue
    # stops growing), then vmgate must pause
    def client_queue():
        buf = array.array("i", [0])
        fcntl.ioctl(c.sock.fileno(), termios.FIONREAD, buf)
        return buf[0]
    last = [-1]

    def settled():
        q = client_queue()
        still = q > 0 and q == last[0]
        last[0] = q
        return still
    assert wait_until(settled, 15, step=0.3), (
        "the client's receive queue never filled: %d bytes" % last[0])
    rss1 = live_gate.rss_kib()
    print("vmgate RSS %d KiB -> %d KiB while the client was not reading" % (rss0, rss1))
    sink = HashSink()
    _, end = c.read(sink=sink)
    c.close()
    n, h = sink.n, sink.h
    assert n == size and h.hexdigest() == want, ("%d of %d bytes, end=%s" % (n, size, end),
                                                 live_gate.tail())
    assert rss1 - rss0 < 32 * 1024, (
        "vmgate RSS grew by %d KiB while the client was not reading "
        "(no backpressure?)" % (rss1 - rss0), live_gate.tail())
