"""Certificates, the vmgate process, its log, and small TLS client helpers."""

import os
import re
import signal
import socket
import ssl
import subprocess
import time

from e2e_net import run, stop_process, wait_tcp

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))

GATE_PORTS = [443, 3000, 8080, 8443, 9000]
VM_SUFFIX = "vm.test"
OTHER_SUFFIX = "other.test"


# ---------------------------------------------------------------- certificates

class Certs:
    """A private CA, an ECDSA P-256 leaf for *.vm.test and an RSA-2048 leaf
    for *.other.test, all made with the openssl CLI into |d|."""

    def __init__(self, d):
        self.dir = d
        os.makedirs(d, exist_ok=True)
        p = lambda n: os.path.join(d, n)  # noqa: E731
        self.ca = p("ca.pem")
        self.ca_key = p("ca.key")
        self.vm_cert, self.vm_key = p("vm.test.pem"), p("vm.test.key")
        self.other_cert, self.other_key = p("other.test.pem"), p("other.test.key")
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:P-256", "-nodes", "-days", "30",
             "-subj", "/CN=vmgate e2e test CA", "-keyout", self.ca_key,
             "-out", self.ca,
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        self._leaf(self.vm_cert, self.vm_key, "*.vm.test",
                   ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"])
        self._leaf(self.other_cert, self.other_key, "*.other.test",
                   ["-newkey", "rsa:2048"])

    def _leaf(self, cert, key, name, keyopts):
        csr = cert + ".csr"
        ext = cert + ".ext"
        run(["openssl", "req", "-new", "-nodes"] + keyopts +
            ["-subj", "/CN=" + name, "-keyout", key, "-out", csr])
        with open(ext, "w") as f:
            f.write("subjectAltName=DNS:%s\n"
                    "basicConstraints=critical,CA:FALSE\n"
                    "keyUsage=critical,digitalSignature,keyEncipherment\n"
                    "extendedKeyUsage=serverAuth\n" % name)
        run(["openssl", "x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey",
             self.ca_key, "-CAcreateserial", "-days", "30", "-out", cert,
             "-extfile", ext])

    def client_ctx(self, minv=None, maxv=None, alpn=None):
        ctx = ssl.create_default_context(cafile=self.ca)
        if minv:
            ctx.minimum_version = minv
        if maxv:
            ctx.maximum_version = maxv
        if alpn:
            ctx.set_alpn_protocols(alpn)
        return ctx


# ---------------------------------------------------------------- config

def gate_config(certs, vms, extra_limits=None, log_level="debug", workers=2,
                ports=GATE_PORTS, port_map="{ 443: 22 }",
                allowed_ports="[443, 3000, 8080, 8443]"):
    """appliance.yaml text for the test fleet. |vms| is [(id, addr)]."""
    limits = {"handshake_timeout_ms": 5000, "connect_timeout_ms": 1500,
              "idle_timeout_ms": 60000}
    limits.update(extra_limits or {})
    lines = [
        "# vmgate end-to-end test configuration (generated)",
        "workers: %d" % workers,
        "log_level: %s" % log_level,
        "listen:",
        '  address: "::"',
        "  ports: [%s]" % ", ".join(str(p) for p in ports),
        "tls:",
        "  certificates:",
        "    - { cert: %s, key: %s }" % (certs.vm_cert, certs.vm_key),
        "    - { cert: %s, key: %s }" % (certs.other_cert, certs.other_key),
        "  alpn: [h2, http/1.1]",
        "domains:",
        "  - suffix: %s" % VM_SUFFIX,
        "    port_map: %s" % port_map,
        "    allowed_ports: %s" % allowed_ports,
        "  - suffix: %s" % OTHER_SUFFIX,
        "vms:",
    ]
    for vid, addr in vms:
        lines.append('  - { id: %s, address: "%s" }' % (vid, addr))
    lines.append("limits:")
    for k, v in limits.items():
        lines.append("  %s: %d" % (k, v))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- the gate

LOG_RE = re.compile(r"^(\S+) (DEBUG|INFO|WARN|ERROR) (\S+)(.*)$")
KV_RE = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')


def parse_kv(line):
    out = {}
    for k, v in KV_RE.findall(line):
        if v.startswith('"'):
            v = v[1:-1]
        out[k] = v
    return out


def listeners_on(ports):
    """Lines of `ss -ltnp` for anything listening on one of |ports|."""
    out = run(["ss", "-Hltnp"], check=False).stdout
    busy = []
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 4:
            m = re.search(r":(\d+)$", f[3])
            if m and int(m.group(1)) in ports:
                busy.append(line)
    return busy


class Gate:
    """A running vmgate (or anything that speaks its command line)."""

    def __init__(self, argv, cfg_path, log_path, ports=GATE_PORTS, wait_port=3000):
        self.ports = ports
        self.wait_port = wait_port
        self.argv = argv
        self.cfg_path = cfg_path
        self.log_path = log_path
        self.proc = None

    def start(self, timeout=10.0):
        busy = listeners_on(self.ports)
        if busy:
            raise RuntimeError("gate ports %s already in use (another vmgate?):\n%s"
                               % (self.ports, "\n".join(busy)))
        logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv + ["-c", self.cfg_path],
                                     stdout=logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL,
                                     start_new_session=True, cwd=REPO)
        logf.close()
        try:
            wait_tcp("127.0.0.1", self.wait_port, timeout=timeout, proc=self.proc)
        except Exception as e:
            self.stop()
            raise RuntimeError("vmgate did not come up: %s\n%s" % (e, self.tail()))

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        try:
            os.kill(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            return self.proc.wait(5)
        except subprocess.TimeoutExpired:
            return stop_process(self.proc, grace=0)

    def fd_count(self):
        return len(os.listdir("/proc/%d/fd" % self.proc.pid))

    def rss_kib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    # -- log

    def text(self):
        try:
            with open(self.log_path, "r", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def mark(self):
        """An offset: later searches only look at lines written after it."""
        try:
            return os.path.getsize(self.log_path)
        except FileNotFoundError:
            return 0

    def lines(self, since=0):
        with open(self.log_path, "rb") as f:
            f.seek(since)
            data = f.read().decode(errors="replace")
        # only complete lines
        if data and not data.endswith("\n"):
            data = data[:data.rfind("\n") + 1]
        return data.splitlines()

    def tail(self, n=40, since=0):
        ls = self.lines(since)
        state = "running" if self.alive() else "exited rc=%s" % (
            None if self.proc is None else self.proc.returncode)
        return ("--- vmgate log (last %d lines, since byte %d; vmgate %s) ---\n%s\n---" %
                (min(n, len(ls)), since, state, "\n".join(ls[-n:])))

    def find(self, pattern, since=0):
        rx = re.compile(pattern)
        return [l for l in self.lines(since) if rx.search(l)]

    def wait_log(self, pattern, timeout=5.0, since=0, count=1):
        """Wait for |count| lines matching regex |pattern|; return them.
        On timeout fail with the log tail in the message."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.find(pattern, since)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError("no vmgate log line matching /%s/ (wanted %d, got %d) "
                                     "within %.1fs\n%s" % (pattern, count, len(found),
                                                           timeout, self.tail(since=since)))
            time.sleep(0.05)


def peer_re(port):
    """Regex for the peer= field of a client whose local port is |port|
    (IPv4 clients may be shown plain or as v4-mapped IPv6)."""
    return r"peer=\[?(?:::ffff:)?(?:127\.0\.0\.1|::1)\]?:%d\b" % port


# ---------------------------------------------------------------- TLS helpers

def tls_connect(ctx, host, port, addr="127.0.0.1", timeout=10.0, session=None,
                server_hostname=True):
    """Blocking TLS connection to the gate, SNI = |host|."""
    raw = socket.create_connection((addr, port), timeout=timeout)
    sni = host if server_hostname is True else server_hostname
    try:
        return ctx.wrap_socket(raw, server_hostname=sni, session=session)
    except BaseException:
        raw.close()
        raise


def recv_all(sock, limit=1 << 30, timeout=None):
    if timeout is not None:
        sock.settimeout(timeout)
    chunks = []
    n = 0
    while n < limit:
        try:
            d = sock.recv(1 << 18)
        except ssl.SSLZeroReturnError:
            break
        if not d:
            break
        chunks.append(d)
        n += len(d)
    return b"".join(chunks)


def curl(args, timeout=30):
    r = subprocess.run(["curl", "-sS", "--max-time", str(timeout)] + args,
                       capture_output=True, timeout=timeout + 5)
    return r


class BioClient:
    """A TLS client over a plain blocking socket and ssl.MemoryBIO, so a test
    controls the TLS layer (close_notify) and the TCP layer (FIN) apart."""

    def __init__(self, ctx, host, port, addr="127.0.0.1", timeout=10.0):
        self.sock = socket.create_connection((addr, port), timeout=timeout)
        self.local_port = self.sock.getsockname()[1]
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_hostname=host)
        self.tcp_eof = False

    def _flush(self):
        d = self.out.read()
        if d:
            self.sock.sendall(d)

    def _fill(self):
        if self.tcp_eof:
            return False
        d = self.sock.recv(1 << 18)
        if not d:
            self.tcp_eof = True
            self.inc.write_eof()
            return False
        self.inc.write(d)
        return True

    def handshake(self):
        while True:
            try:
                self.obj.do_handshake()
                self._flush()
                return
            except ssl.SSLWantReadError:
                self._flush()
                if not self._fill():
                    raise ConnectionError("TCP EOF during the TLS handshake")

    def send(self, data, chunk=1 << 16):
        mv = memoryview(data)
        for i in range(0, len(mv), chunk):
            self.obj.write(mv[i:i + chunk])
            self._flush()

    def read(self, limit=None, sink=None):
        """Read application data until the stream ends (or |limit| bytes).
        Returns (data, end): end is "close_notify" (TLS closure alert),
        "eof" (TCP FIN without close_notify), "limit", or "error:..."
        (an alert or a reset). With |sink| (a callable) data is passed to it
        instead of being kept."""
        chunks, n = [], 0
        while limit is None or n < limit:
            try:
                d = self.obj.read(1 << 16)
                if not d:
                    return b"".join(chunks), "close_notify"
                n += len(d)
                (sink or chunks.append)(d)
            except ssl.SSLZeroReturnError:
                return b"".join(chunks), "close_notify"
            except ssl.SSLWantReadError:
                self._flush()
                try:
                    self._fill()
                except OSError as e:
                    return b"".join(chunks), "error:%r" % e
            except ssl.SSLEOFError:
                return b"".join(chunks), "eof"
            except ssl.SSLError as e:
                return b"".join(chunks), "error:%s" % e
        return b"".join(chunks), "limit"

    def close_notify(self):
        """Send our close_notify (TLS half-close); reading goes on."""
        try:
            self.obj.unwrap()
        except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
            pass
        self._flush()

    def shutdown_tcp_write(self):
        self.sock.shutdown(socket.SHUT_WR)

    def wait_tcp_eof(self, timeout=10.0):
        """Drain the socket until the peer's FIN (True) or timeout (False)."""
        self.sock.settimeout(timeout)
        try:
            while self.sock.recv(1 << 16):
                pass
            return True
        except socket.timeout:
            return False
        except OSError:
            return True

    def close(self):
        self.sock.close()
