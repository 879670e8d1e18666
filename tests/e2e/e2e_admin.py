"""Issue 4 helpers: a vmgate of its own with an admin: section, for the admin
API and reload tests.

It runs on ports 21000-21999 (data 21080 -> VM 8080 echo, 21300 -> VM 3000
http; admin API on [::]:21901 and a unix socket), so the shared `gate`
fixture is never touched, and every test gets a fresh one (its own
directory, appliance.yaml, token, state file, certificate copies): tests
that edit the file, SIGKILL the process or swap certificates stay apart.
The simulated VMs are the session `fleet`; a VM id of the test's choosing
can point at any fleet address ("alias1" -> vm1's address answers as vm1).
"""

import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time

from e2e_net import run, stop_process, wait_tcp
from e2e_util import Gate, curl, listeners_on, own_gate_head, tls_connect

ADMIN_PORT = 21901
ECHO_PORT = 21080  # -> VM port 8080 (echo)
HTTP_PORT = 21300  # -> VM port 3000 (vm1: http, GET /health -> "ok vm1")
DATA_PORTS = [ECHO_PORT, HTTP_PORT]
TOKEN = "e2e-admin-token-5f0c2b7d9a"


class AdminGate(Gate):
    """A vmgate with the admin API, in directory |d|."""

    def __init__(self, argv, d, certs, vms, log_level="info", hidden=False):
        """|hidden|: appliance.yaml is a symlink to a file in a directory
        the file watch does not see, so only SIGHUP or POST /reload can
        make vmgate read an edit."""
        os.makedirs(d, exist_ok=True)
        self.dir = d
        self.certs = certs
        self.cert = os.path.join(d, "vm.test.pem")
        self.key = os.path.join(d, "vm.test.key")
        shutil.copy(certs.vm_cert, self.cert)
        shutil.copy(certs.vm_key, self.key)
        self.token_file = os.path.join(d, "token")
        with open(self.token_file, "w") as f:
            f.write(TOKEN + "\n")
        self.unix = os.path.join(d, "admin.sock")
        self.state_file = os.path.join(d, "state.json")
        self.log_level = log_level
        self.vms = list(vms)
        cfg = os.path.join(d, "appliance.yaml")
        self.real_cfg = cfg
        if hidden:
            os.makedirs(os.path.join(d, "hidden"), exist_ok=True)
            self.real_cfg = os.path.join(d, "hidden", "appliance.yaml")
        Gate.__init__(self, argv, cfg, os.path.join(d, "vmgate.log"),
                      ports=DATA_PORTS + [ADMIN_PORT], wait_port=ECHO_PORT)
        self.write_config(self.vms)
        if hidden:
            os.symlink(self.real_cfg, cfg)

    # -- configuration

    def config_text(self, vms, broken=False):
        lines = [
            "# vmgate e2e admin/reload configuration (generated)",
            *own_gate_head(DATA_PORTS, self.certs, other=False,
                           log_level=self.log_level, vm_pair=(self.cert, self.key)),
            "domains:",
            "  - suffix: vm.test",
            "    port_map: { %d: 8080, %d: 3000 }" % (ECHO_PORT, HTTP_PORT),
            "vms:",
        ]
        for vid, addr in vms:
            lines.append('  - { id: %s, address: "%s" }' % (vid, addr))
        if broken:
            # line and column are asserted by the tests
            lines.append('  - { id: broken, address: "not-an-address" }')
        lines += [
            "limits:",
            "  handshake_timeout_ms: 5000",
            "  connect_timeout_ms: 1500",
            "  drain_timeout_ms: 2000",
            "admin:",
            '  listen: "[::]:%d"' % ADMIN_PORT,
            "  unix: %s" % self.unix,
            "  token_file: %s" % self.token_file,
            "  state_file: %s" % self.state_file,
        ]
        return "\n".join(lines) + "\n"

    def write_config(self, vms, broken=False, in_place=False):
        """Replace appliance.yaml the way deploy tools do: a new file renamed
        over the old one (the file watch sees IN_MOVED_TO), or, |in_place|,
        the way an editor may: truncated and rewritten (IN_CLOSE_WRITE).
        Returns the text written."""
        self.vms = list(vms)
        text = self.config_text(vms, broken)
        if in_place:
            with open(self.real_cfg, "w") as f:
                f.write(text)
            return text
        tmp = self.real_cfg + ".new"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.real_cfg)
        return text

    # -- process

    def start(self, timeout=10.0):
        Gate.start(self, timeout)
        wait_tcp("127.0.0.1", ADMIN_PORT, timeout=timeout, proc=self.proc)

    def kill(self, wait_gone=True):
        """SIGKILL: no chance to flush or clean anything up. Returns once
        the process is reaped and, |wait_gone|, once the listening sockets
        are gone too: the kernel tears down a dead process's io_uring (and
        the sockets its accepts hold) a moment after the process itself is
        reaped."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(5)
        if not wait_gone:
            return
        t0 = time.monotonic()
        while listeners_on(self.ports) and time.monotonic() < t0 + 5:
            time.sleep(0.02)
        print("listeners gone %.3f s after SIGKILL" % (time.monotonic() - t0))

    def stop(self):
        rc = Gate.stop(self)
        if self.proc is not None and self.proc.poll() is None:
            stop_process(self.proc, grace=0)
        return rc

    def hup(self):
        os.kill(self.proc.pid, signal.SIGHUP)

    # -- admin API

    def api(self, method, path, body=None, token=TOKEN, headers=None,
            timeout=10, unix=False):
        """One request on a new connection: (status, headers, parsed body).
        |body|: a dict/list (sent as JSON), bytes/str (sent as is) or None."""
        if unix:
            c = UnixHTTPConnection(self.unix, timeout=timeout)
        else:
            c = http.client.HTTPConnection("127.0.0.1", ADMIN_PORT,
                                           timeout=timeout)
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = "Bearer " + token
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
            h["Content-Type"] = "application/json"
        try:
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            data = r.read()
            hdrs = {k.lower(): v for k, v in r.getheaders()}
        finally:
            c.close()
        if hdrs.get("content-type", "").startswith("application/json"):
            data = json.loads(data)
        return r.status, hdrs, data


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=10):
        http.client.HTTPConnection.__init__(self, "localhost", timeout=timeout)
        self.path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.path)
        self.sock = s


# ---------------------------------------------------------------- data path

def host(vid):
    return "%s.vm.test" % vid


def http_health(certs, vid, timeout=10):
    """curl https://VID.vm.test:21300/health through the gate: the body
    ("ok vm1\\n" from vm1's http service) or None when it failed."""
    r = curl(["--cacert", certs.ca, "--resolve",
              "%s:%d:127.0.0.1" % (host(vid), HTTP_PORT),
              "https://%s:%d/health" % (host(vid), HTTP_PORT)],
             timeout=timeout)
    return r.stdout.decode(errors="replace") if r.returncode == 0 else None


def echo_once(certs, vid, payload=b"ping\n", timeout=5):
    """One TLS connection to VID's echo service: the echoed bytes."""
    s = tls_connect(certs.client_ctx(), host(vid), ECHO_PORT, timeout=timeout)
    try:
        s.sendall(payload)
        got = b""
        while len(got) < len(payload):
            d = s.recv(65536)
            if not d:
                break
            got += d
        return got
    finally:
        s.close()


def handshake_error(certs, vid, port=ECHO_PORT):
    """(local port, the SSLError/OSError) of a handshake expected to fail;
    (local port, None) if it succeeded."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    lport = raw.getsockname()[1]
    try:
        s = certs.client_ctx().wrap_socket(raw, server_hostname=host(vid))
    except (ssl.SSLError, OSError) as e:
        raw.close()
        return lport, e
    s.close()
    return lport, None


def is_unrecognized_name(err):
    return isinstance(err, ssl.SSLError) and (
        "UNRECOGNIZED_NAME" in str(err).upper() or
        "unrecognized name" in str(err))


def leaf_der(certs, sni, port=ECHO_PORT):
    """The DER of the certificate the gate presents for |sni|."""
    s = tls_connect(certs.client_ctx(), sni, port)
    try:
        return s.getpeercert(binary_form=True)
    finally:
        s.close()


def make_leaf(certs, d, name="*.vm.test"):
    """A new ECDSA leaf for |name| from the session CA, in |d|: (cert, key,
    DER of the certificate)."""
    cert, key = os.path.join(d, "new.pem"), os.path.join(d, "new.key")
    csr, ext = cert + ".csr", cert + ".ext"
    run(["openssl", "req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:P-256", "-subj", "/CN=" + name, "-keyout", key,
         "-out", csr])
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:%s\nbasicConstraints=critical,CA:FALSE\n"
                "extendedKeyUsage=serverAuth\n" % name)
    run(["openssl", "x509", "-req", "-in", csr, "-CA", certs.ca, "-CAkey",
         certs.ca_key, "-CAcreateserial", "-days", "30", "-out", cert,
         "-extfile", ext])
    der = subprocess.run(["openssl", "x509", "-in", cert, "-outform", "DER"],
                         capture_output=True, check=True).stdout
    return cert, key, der
