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
                allowed_ports="[443, 3000, 8080, 8443]", vm_ocsp=None,
                admin_unix=None, other_port_map=None, extra=None, other_client_ca=None,
                steering=None):
    """appliance.yaml text for the test fleet. |vms| is [(id, addr)].
    |vm_ocsp|: a DER OCSP response to staple with the *.vm.test certificate.
    |admin_unix|: a path for the admin API's unix socket (Gate.held() reads
    the open connections there). |other_port_map|: other.test's port_map
    (none by default). |extra|: more top-level YAML lines, appended.
    |other_client_ca|: other.test asks for client certificates of this CA.
    |steering|: listen.steering (auto when None)."""
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
    ] + (["  steering: %s" % steering] if steering else []) + [
        "tls:",
        "  certificates:",
        "    - { cert: %s, key: %s%s }" % (certs.vm_cert, certs.vm_key,
                                          ", ocsp: %s" % vm_ocsp if vm_ocsp else ""),
        "    - { cert: %s, key: %s }" % (certs.other_cert, certs.other_key),
        "  alpn: [h2, http/1.1]",
        "  alpn_ports: { 3000: [http/1.1] }",
        "domains:",
        "  - suffix: %s" % VM_SUFFIX,
        "    port_map: %s" % port_map,
        "    allowed_ports: %s" % allowed_ports,
        "  - suffix: %s" % OTHER_SUFFIX,
    ] + (["    port_map: %s" % other_port_map] if other_port_map else []) + (
        ["    client_auth: { ca: %s }" % other_client_ca] if other_client_ca else []) + [
        "vms:",
    ]
    for vid, addr in vms:
        lines.append('  - { id: %s, address: "%s" }' % (vid, addr))
    lines.append("limits:")
    for k, v in limits.items():
        lines.append("  %s: %d" % (k, v))
    if admin_unix:
        lines += ["admin:", "  unix: %s" % admin_unix]
    lines += list(extra or [])
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


def direct_descriptors(gate_bin):
    """True when the vmgate binary (argv |gate_bin|) keeps sockets as
    io_uring direct descriptors on this kernel (and VMGATE_PROBE_KERNEL,
    if set): `vmgate --version` says which, as its startup line will."""
    return "sockets mode=direct" in run([gate_bin[0], "--version"]).stdout


class Gate:
    """A running vmgate (or anything that speaks its command line)."""

    def __init__(self, argv, cfg_path, log_path, ports=GATE_PORTS, wait_port=3000):
        self.ports = ports
        self.wait_port = wait_port
        self.argv = argv
        self.cfg_path = cfg_path
        self.log_path = log_path
        self.proc = None
        self.env = {}  # more environment for vmgate

    def start(self, timeout=10.0):
        busy = listeners_on(self.ports)
        if busy:
            raise RuntimeError("gate ports %s already in use (another vmgate?):\n%s"
                               % (self.ports, "\n".join(busy)))
        self.spawn()
        try:
            wait_tcp("127.0.0.1", self.wait_port, timeout=timeout, proc=self.proc)
            # The data ports listen before the admin API is up.
            self.wait_admin(timeout=timeout)
        except Exception as e:
            self.stop()
            raise RuntimeError("vmgate did not come up: %s\n%s" % (e, self.tail()))

    def spawn(self):
        """Start vmgate on its command line and return at once: no check
        that the ports are free and no wait for them (start does both; a
        supervisor's restart after SIGKILL does neither)."""
        logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv + ["-c", self.cfg_path],
                                     stdout=logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL,
                                     start_new_session=True, cwd=REPO,
                                     env=dict(os.environ, **self.env))
        logf.close()

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

    def admin_socket(self):
        """The admin API's unix socket named in the gate's config, or None."""
        try:
            with open(self.cfg_path) as f:
                m = re.search(r"^admin:\n(?:  .*\n)*?  unix: (\S+)$", f.read(), re.M)
        except OSError:
            return None
        return m.group(1) if m else None

    def wait_admin(self, timeout=10.0):
        """Waits until the admin API's unix socket (if the config names
        one) accepts a connection."""
        path = self.admin_socket()
        deadline = time.monotonic() + timeout
        while path:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                try:
                    s.connect(path)
                    return
                except OSError as e:
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("admin socket %s: %s" % (path, e))
            time.sleep(0.02)

    def open_connections(self):
        """vmgate_connections_open from the admin API's unix socket (None
        when the gate has none): the connections the workers hold, as of
        their last loop (at most one 100 ms tick old)."""
        path = self.admin_socket()
        if not path:
            return None
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(path)
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: gate\r\n"
                      b"Connection: close\r\n\r\n")
            data = recv_all(s)
        m = re.search(rb"^vmgate_connections_open (\d+)$", data, re.M)
        assert m, "no vmgate_connections_open in /metrics:\n%r" % data[:300]
        return int(m.group(1))

    def held(self):
        """What the gate holds for connections: its open fds plus the
        connections open. With direct descriptors (the default build) a
        connection's sockets live in the rings' file tables and are no
        fds, so fds alone would miss them; with plain fds a connection
        counts in both, which only makes the figure move further."""
        fds = self.fd_count()
        return fds + (self.open_connections() or 0)


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
                # nothing since the mark: show what came before it too
                tail = self.tail(since=since if self.lines(since) else 0)
                raise AssertionError("no vmgate log line matching /%s/ (wanted %d, got %d) "
                                     "within %.1fs\n%s" % (pattern, count, len(found),
                                                           timeout, tail))
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


def recv_all(sock, limit=1 << 30, timeout=None, until=None):
    """Read until EOF (or close_notify), |limit| bytes, or, with |until|,
    until until(the bytes so far) is true. Timeouts and resets raise."""
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
        if until is not None and until(b"".join(chunks)):
            break
    return b"".join(chunks)


def curl(args, timeout=30):
    r = subprocess.run(["curl", "-sS", "--max-time", str(timeout)] + args,
                       capture_output=True, timeout=timeout + 5)
    return r


class BioClient:
    """A TLS client over a plain blocking socket and ssl.MemoryBIO, so a test
    controls the TLS layer (close_notify) and the TCP layer (FIN) apart."""

    def __init__(self, ctx, host, port, addr="127.0.0.1", timeout=10.0, rcvbuf=None):
        if rcvbuf:
            # before the connect: the window offered in the SYN follows it
            self.sock = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.settimeout(timeout)
            self.sock.connect((addr, port))
        else:
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

    def handshake(self, flush=True):
        """With |flush| False, the client's last flight (its Finished)
        stays unsent, to leave in one send with the first bytes."""
        while True:
            try:
                self.obj.do_handshake()
                if flush:
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
        "eof" (TCP FIN without close_notify; a context with Python's default
        OP_IGNORE_UNEXPECTED_EOF reads that as close_notify), "limit", or "error:..."
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
                if e.reason == "UNEXPECTED_EOF_WHILE_READING":
                    return b"".join(chunks), "eof"
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


# ---------------------------------------------------------------- hostile clients
# (issue 6: crafted ClientHellos, wire-level answers, the gate's footprint)

def raise_fd_limit(want=20000):
    """Raise this process's soft RLIMIT_NOFILE (for thousands of sockets)."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new = min(want, hard) if hard != resource.RLIM_INFINITY else want
    if soft < new:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _u16(n):
    return n.to_bytes(2, "big")


class Hello:
    """A real ClientHello (python's, captured through a MemoryBIO), taken
    apart so a test can change its version, extensions and framing and put
    it back together with every length fixed up."""

    def __init__(self, sni="vm1.vm.test", maxv=None):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        if maxv:
            ctx.maximum_version = maxv
        out = ssl.MemoryBIO()
        obj = ctx.wrap_bio(ssl.MemoryBIO(), out, server_hostname=sni)
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        rec = out.read()
        assert rec[0] == 0x16 and rec[5] == 0x01, rec[:10]
        n = int.from_bytes(rec[6:9], "big")
        msg = rec[9:9 + n]
        self.version = msg[0:2]
        self.random = msg[2:34]
        p = 34
        sid_len = msg[p]
        self.session_id = msg[p + 1:p + 1 + sid_len]
        p += 1 + sid_len
        cs_len = int.from_bytes(msg[p:p + 2], "big")
        self.ciphers = msg[p + 2:p + 2 + cs_len]
        p += 2 + cs_len
        comp_len = msg[p]
        self.compression = msg[p + 1:p + 1 + comp_len]
        p += 1 + comp_len
        ext_len = int.from_bytes(msg[p:p + 2], "big")
        p += 2
        end = p + ext_len
        self.exts = []
        while p < end:
            t = int.from_bytes(msg[p:p + 2], "big")
            ln = int.from_bytes(msg[p + 2:p + 4], "big")
            self.exts.append([t, msg[p + 4:p + 4 + ln]])
            p += 4 + ln

    # -- edits

    def drop(self, ext_type):
        self.exts = [e for e in self.exts if e[0] != ext_type]
        return self

    def put(self, ext_type, data):
        """Replace extension |ext_type| (or add it, before pre_shared_key)."""
        for e in self.exts:
            if e[0] == ext_type:
                e[1] = data
                return self
        i = next((k for k, e in enumerate(self.exts) if e[0] == 41), len(self.exts))
        self.exts.insert(i, [ext_type, data])
        return self

    def set_sni(self, *names, name_type=0):
        """server_name with these host_name entries (bytes)."""
        lst = b"".join(bytes([name_type]) + _u16(len(n)) + n for n in names)
        return self.put(0, _u16(len(lst)) + lst)

    def pad(self, total):
        """Add a padding extension so the handshake message is |total| bytes."""
        self.drop(21)
        need = total - len(self.message()) - 4
        assert need >= 0, (total, len(self.message()))
        return self.put(21, b"\0" * need)

    def only_version(self, v):
        """A client that speaks only legacy version |v| (e.g. b'\\x03\\x01'):
        legacy_version = v, no supported_versions, no TLS 1.3 key shares."""
        self.version = v
        for t in (43, 51, 45, 41, 42):
            self.drop(t)
        return self

    # -- bytes

    def message(self):
        ext = b"".join(_u16(t) + _u16(len(d)) + d for t, d in self.exts)
        body = (self.version + self.random + bytes([len(self.session_id)]) +
                self.session_id + _u16(len(self.ciphers)) + self.ciphers +
                bytes([len(self.compression)]) + self.compression +
                _u16(len(ext)) + ext)
        return b"\x01" + len(body).to_bytes(3, "big") + body

    def records(self, chunk=16384, record_version=b"\x03\x01"):
        """The handshake message framed in TLS records of at most |chunk|."""
        m = self.message()
        return b"".join(b"\x16" + record_version + _u16(len(m[i:i + chunk])) + m[i:i + chunk]
                        for i in range(0, len(m), chunk))


def read_answer(sock, timeout=10.0, limit=1 << 20, done=None):
    """Read until EOF/reset/timeout, or until done(data) holds (how is
    then "done"). -> (data, how) with how one of "eof", "reset",
    "timeout", "done"."""
    sock.settimeout(timeout)
    data, how = b"", "eof"
    deadline = time.monotonic() + timeout
    try:
        while len(data) < limit:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            d = sock.recv(65536)
            if not d:
                break
            data += d
            if done and done(data):
                how = "done"
                break
    except socket.timeout:
        how = "timeout"
    except (ConnectionResetError, BrokenPipeError):
        how = "reset"
    return data, how


def server_flight_in(data):
    """True once |data| begins with a whole handshake record (the
    server's first flight, after which the server waits for the client):
    a read_answer(done=) that need not wait out its timeout. An alert
    does not count: its reader goes on to the close that follows it."""
    return (data[:1] == b"\x16" and len(data) >= 5
            and len(data) >= 5 + int.from_bytes(data[3:5], "big"))


def plaintext_alerts(data):
    """[(level, description)] of the unencrypted alert records in |data|
    (records before the first ChangeCipherSpec / encrypted record)."""
    out = []
    p = 0
    while p + 5 <= len(data):
        ctype = data[p]
        ln = int.from_bytes(data[p + 3:p + 5], "big")
        frag = data[p + 5:p + 5 + ln]
        if ctype == 0x15 and len(frag) == 2:
            out.append((frag[0], frag[1]))
        elif ctype in (0x14, 0x17):
            break
        p += 5 + ln
    return out


def echo_roundtrip(certs, port=8080, host="vm1.vm.test", size=2048, timeout=10.0):
    """A well-behaved client: new TLS connection, |size| random bytes through
    an echo backend and back. Returns the seconds it took; raises on error."""
    t0 = time.monotonic()
    payload = os.urandom(size)
    with tls_connect(certs.client_ctx(), host, port, timeout=timeout) as s:
        s.sendall(payload)
        got = recv_all(s, limit=len(payload))
        assert len(got) >= len(payload), (
            "echo connection closed after %d of %d bytes" % (len(got), size))
        assert got == payload, "echo returned different bytes"
    return time.monotonic() - t0


def proc_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def proc_rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Footprint:
    """What the gate holds (Gate.held(): open fds plus open connections)
    and its RSS, taken once it is quiet; check() waits for the holdings to
    come back to it and the RSS to stay near it."""

    def __init__(self, gate, settle=3.0):
        self.gate = gate
        deadline = time.monotonic() + settle
        last = gate.held()
        # quiet = the same holdings for 0.3 s (connections of earlier tests
        # may still be lingering out)
        stable_since = time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.05)
            now = gate.held()
            if now != last:
                last, stable_since = now, time.monotonic()
            elif time.monotonic() - stable_since >= 0.3:
                break
        self.fds = last
        self.rss = gate.rss_kib()

    def check(self, what="", timeout=8.0, rss_slack_kib=8192):
        # AddressSanitizer keeps freed memory in its quarantine (16 MiB, see
        # the Makefile) and never gives heap back: RSS cannot come back to
        # baseline under it. The holdings check stays exact.
        if os.environ.get("VMGATE_SANITIZED"):
            rss_slack_kib += 40 * 1024
        deadline = time.monotonic() + timeout
        while True:
            fds = self.gate.held()
            if fds <= self.fds or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        rss = self.gate.rss_kib()
        assert fds <= self.fds, (
            "%s: vmgate holds %d (fds + open connections) %.0fs after the "
            "attack; baseline %d\n%s" %
            (what, fds, timeout, self.fds, fd_listing(self.gate.proc.pid)))
        assert rss <= self.rss + rss_slack_kib, (
            "%s: vmgate RSS %d KiB after the attack; baseline %d KiB (+%d allowed)" %
            (what, rss, self.rss, rss_slack_kib))
        return fds, rss


def fd_listing(pid):
    out = []
    d = "/proc/%d/fd" % pid
    try:
        for n in sorted(os.listdir(d), key=int):
            try:
                out.append("%s -> %s" % (n, os.readlink(os.path.join(d, n))))
            except OSError:
                pass
    except OSError:
        return ""
    return "\n".join(out[-40:])


# ---------------------------------------------------------------- conditions to poll
# (issue 10: a test waits for something it can observe, never for a fixed
# time; poll these with wait_until)

def wait_until(fn, timeout, step=0.05, what=None):
    """Calls fn() every |step| s until it returns something true or
    |timeout| s have passed, and returns its last value: the one poll loop
    of the suite (callers assert on it). With |what|, a timeout fails here
    instead, naming |what| and fn()'s last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            if what is not None:
                raise AssertionError("%s: not within %.1f s (last: %r)"
                                     % (what, timeout, v))
            return v
        time.sleep(step)


def tcp_sockets(filt=""):
    """[(state, recv_q, send_q, local, peer)] of this namespace's TCP
    sockets that `ss -Htan FILT` lists (|filt| in ss syntax, e.g.
    "sport = :3000"). The kernel's view: it sees a gate's sockets whether
    they are fds or direct descriptors, and a connection still in a
    listener's accept queue."""
    out = run(["ss", "-Htan"] + ([filt] if filt else []), check=False).stdout
    socks = []
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 5:
            socks.append((f[0], int(f[1]), int(f[2]), f[3], f[4]))
    return socks


def gate_metric(gate, name):
    """A value from the gate's /metrics (read on its admin unix socket),
    |name| as printed, labels included (e.g.
    'vmgate_bytes_total{direction="client_to_vm"}'); None if absent."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(gate.admin_socket())
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: gate\r\n"
                  b"Connection: close\r\n\r\n")
        data = recv_all(s).decode(errors="replace")
    for line in data.splitlines():
        k, _, v = line.rpartition(" ")
        if k == name:
            return int(v)
    return None


def inotify_watch_list(pid):
    """[(wd, st_dev, st_ino)] of what the inotify instances of process
    |pid| watch (/proc/PID/fdinfo)."""
    out = []
    d = "/proc/%d/fdinfo" % pid
    for n in os.listdir(d):
        try:
            with open(os.path.join(d, n)) as f:
                text = f.read()
        except OSError:
            continue
        for m in re.finditer(r"^inotify wd:(\d+) ino:([0-9a-f]+) sdev:([0-9a-f]+)",
                             text, re.M):
            sdev = int(m.group(3), 16)
            # the kernel's dev_t: major in the top 12 bits, minor below
            out.append((int(m.group(1)), os.makedev(sdev >> 20, sdev & 0xfffff),
                        int(m.group(2), 16)))
    return out


def inotify_watches(pid):
    """{(st_dev, st_ino)} of what the inotify instances of process |pid|
    watch."""
    return {(dev, ino) for _, dev, ino in inotify_watch_list(pid)}


def own_gate_head(ports, certs, other=True, log_level="debug", vm_pair=None):
    """The first lines of a test's own gate config: two workers, |log_level|,
    |ports| on "::", the *.vm.test certificate (|vm_pair|, a (cert, key)
    pair of paths, instead of |certs|' files when given; and *.other.test's
    with |other|), ALPN http/1.1. The test appends its domains: and vms:."""
    vm_cert, vm_key = vm_pair or (certs.vm_cert, certs.vm_key)
    lines = [
        "workers: 2",
        "log_level: %s" % log_level,
        "listen:",
        '  address: "::"',
        "  ports: [%s]" % ", ".join(str(p) for p in ports),
        "tls:",
        "  certificates:",
        "    - { cert: %s, key: %s }" % (vm_cert, vm_key),
    ]
    if other:
        lines.append("    - { cert: %s, key: %s }" % (certs.other_cert, certs.other_key))
    lines.append("  alpn: [http/1.1]")
    return lines
