"""Issue 15 item 3: client certificates per domain (domains[].client_auth).

A private vmgate asks for client certificates on two domains: vm.test
(required: true) and other.test (required: false), both verified against
a client CA made here with openssl. vm.test reaches vm1's HTTP service
(GET /health answers "ok vm1"); VM port 9321 of vm.test gets a PROXY v2
header, read by a small service in vm1's namespace that answers with its
TLVs. curl --cert/--key: a certificate of that CA is accepted (its
subject in the close line, its CN in PP2_SUBTYPE_SSL_CN); none, an
expired one and one from another CA are refused with their alerts
(certificate_required, certificate_expired, unknown_ca). Replacing the
CA file reloads it (the file is watched): the other CA's certificate is
accepted after that, the first one refused."""

import os
import shutil
import subprocess
import time

import pytest

from conftest import PY
from e2e_net import free_ports, stop_process, wait_tcp
from e2e_util import own_gate_head, Gate, curl, parse_kv

PP_PORT = 9321

PP_SCRIPT = r'''
import socket, struct, sys, threading
port = int(sys.argv[1])

def recvn(c, n):
    b = b""
    while len(b) < n:
        d = c.recv(n - len(b))
        if not d:
            raise EOFError
        b += d
    return b

def handle(c):
    try:
        h = recvn(c, 16)
        body = recvn(c, struct.unpack("!H", h[14:16])[0])
        out = []
        b = body[12 if h[13] == 0x11 else 36:]
        while b:
            t, l = b[0], struct.unpack("!H", b[1:3])[0]
            v = b[3:3 + l]
            if t == 0x20:
                out.append("client=%d verify=%d" % (v[0], struct.unpack("!I", v[1:5])[0]))
                s = v[5:]
                while s:
                    st, sl = s[0], struct.unpack("!H", s[1:3])[0]
                    out.append("s%02x=%s" % (st, s[3:3 + sl].decode()))
                    s = s[3 + sl:]
            b = b[3 + l:]
        body = (" ".join(out) + "\n").encode()
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                  % len(body) + body)
    finally:
        c.close()

ls = socket.socket(socket.AF_INET6)
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("::", port))
ls.listen(16)
while True:
    c, _ = ls.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()
'''

CA_CNF = """[ ca ]
default_ca = ca_default
[ ca_default ]
dir = {d}
database = {d}/index.txt
new_certs_dir = {d}
serial = {d}/serial
default_md = sha256
policy = policy_any
unique_subject = no
copy_extensions = none
[ policy_any ]
organizationName = optional
commonName = supplied
[ client_ext ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
"""


def openssl(*args):
    r = subprocess.run(["openssl"] + list(args), capture_output=True)
    assert r.returncode == 0, r.stderr.decode(errors="replace")


class ClientCA:
    """A CA of client certificates, with `openssl ca` for chosen dates."""

    def __init__(self, d, name):
        self.d = os.path.join(d, name)
        os.makedirs(self.d, exist_ok=True)
        self.cert = os.path.join(self.d, "ca.pem")
        self.key = os.path.join(self.d, "ca.key")
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-days", "30", "-subj", "/CN=%s" % name, "-keyout", self.key,
                "-out", self.cert, "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        open(os.path.join(self.d, "index.txt"), "w").close()
        with open(os.path.join(self.d, "serial"), "w") as f:
            f.write("1000\n")
        self.cnf = os.path.join(self.d, "ca.cnf")
        with open(self.cnf, "w") as f:
            f.write(CA_CNF.format(d=self.d))

    def issue(self, cn, start="", end="", subj=None):
        """-> (cert, key) for /O=vmgate e2e/CN=|cn| (or |subj|, the files
        still named by |cn|); |start|, |end| as YYYYMMDDHHMMSSZ (default:
        now, 30 days)."""
        key = os.path.join(self.d, cn + ".key")
        csr = os.path.join(self.d, cn + ".csr")
        cert = os.path.join(self.d, cn + ".pem")
        openssl("req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt",
                "ec_paramgen_curve:P-256", "-utf8", "-subj",
                subj or "/O=vmgate e2e/CN=%s" % cn, "-keyout", key, "-out", csr)
        dates = (["-startdate", start, "-enddate", end] if start else ["-days", "30"])
        openssl("ca", "-batch", "-config", self.cnf, "-cert", self.cert, "-keyfile",
                self.key, "-extensions", "client_ext", "-in", csr, "-out", cert,
                "-notext", *dates)
        return cert, key


@pytest.fixture(scope="module")
def cas(workdir):
    d = os.path.join(workdir, "client-auth")
    good, other = ClientCA(d, "client-ca"), ClientCA(d, "other-ca")
    return {
        "dir": d, "good": good, "other": other,
        "alice": good.issue("alice"),
        "expired": good.issue("old", "20200101000000Z", "20200201000000Z"),
        "mallory": other.issue("mallory"),
        "two-cns": good.issue("two-cns", subj="/O=vmgate e2e/CN=alice/CN=bob"),
        "jurgen": good.issue("jurgen", subj="/O=vmgate e2e/CN=j\u00fcrgen"),
    }


@pytest.fixture(scope="module")
def pp_service(fleet, workdir):
    vm = fleet.vms["vm1"]
    p = vm.spawn([PY, "-c", PP_SCRIPT, str(PP_PORT)],
                 os.path.join(workdir, "backend-logs", "vm1-client-auth-pp.log"))
    try:
        wait_tcp(fleet.addr("vm1"), PP_PORT, timeout=10, proc=p)
        yield
    finally:
        stop_process(p)


@pytest.fixture(scope="module")
def cgate(gate_bin, certs, fleet, workdir, cas, pp_service):
    """Listener ports: "web" (-> vm1:3000), "pp" (-> vm1:9321, PROXY v2)."""
    names = ("web", "pp")
    ports = dict(zip(names, free_ports(len(names))))
    # The gate reads its own copy: the reload test replaces it.
    ca_file = os.path.join(cas["dir"], "trusted.pem")
    shutil.copyfile(cas["good"].cert, ca_file)
    cfg = os.path.join(workdir, "client-auth.yaml")
    with open(cfg, "w") as f:
        f.write("\n".join([
            *own_gate_head(ports.values(), certs, other=True),
            "domains:",
            "  - suffix: vm.test",
            "    port_map: { %d: 3000, %d: %d }" % (ports["web"], ports["pp"], PP_PORT),
            "    proxy_protocol: v2",
            "    proxy_protocol_ports: [%d]" % PP_PORT,
            "    client_auth: { ca: %s, required: true }" % ca_file,
            "  - suffix: other.test",
            "    port_map: { %d: 3000 }" % ports["web"],
            "    client_auth: { ca: %s, required: false }" % ca_file,
            "vms:",
            '  - { id: vm1, address: "%s" }' % fleet.addr("vm1"),
            "",
        ]))
    g = Gate(gate_bin, cfg, os.path.join(workdir, "client-auth.log"),
             ports=list(ports.values()), wait_port=ports["web"])
    g.start()
    g.port = ports
    g.ca_file = ca_file
    yield g
    g.stop()


def get(gate, certs, cred=None, host="vm1.vm.test", port="web", path="/health"):
    p = gate.port[port]
    args = ["--cacert", certs.ca,
            "--resolve", "%s:%d:127.0.0.1" % (host, p), "--max-time", "10"]
    if cred:
        args += ["--cert", cred[0], "--key", cred[1]]
    r = curl(args + ["https://%s:%d%s" % (host, p, path)])
    return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


def test_accepted(cgate, certs, cas):
    mark = cgate.mark()
    rc, out, err = get(cgate, certs, cas["alice"])
    assert rc == 0 and out == "ok vm1\n", (rc, out, err)
    line = cgate.wait_log(r"INFO close .*sni=vm1\.vm\.test vm=vm1 vm_port=3000 ", since=mark)[0]
    kv = parse_kv(line)
    assert kv["reason"] == "done", line
    assert kv["client_cert"] == r"/O=vmgate\x20e2e/CN=alice", line


@pytest.mark.parametrize("who,alert", [
    (None, "certificate required"),
    ("expired", "certificate expired"),
    ("mallory", "unknown ca"),
])
def test_refused(cgate, certs, cas, who, alert):
    mark = cgate.mark()
    rc, out, err = get(cgate, certs, cas[who] if who else None)
    assert rc != 0 and out == "", (rc, out, err)
    assert "alert " + alert in err, err
    line = cgate.wait_log(r"close .*sni=vm1\.vm\.test .*reason=tls_error", since=mark)[0]
    assert "client_cert=" not in line, line


def test_optional(cgate, certs, cas):
    """required: false: no certificate is fine, a bad one is not."""
    rc, out, err = get(cgate, certs, None, host="vm1.other.test")
    assert rc == 0 and out == "ok vm1\n", (rc, out, err)
    rc, out, err = get(cgate, certs, cas["mallory"], host="vm1.other.test")
    assert rc != 0 and "alert unknown ca" in err, (rc, out, err)
    mark = cgate.mark()
    rc, out, err = get(cgate, certs, cas["alice"], host="vm1.other.test")
    assert rc == 0 and out == "ok vm1\n", (rc, out, err)
    line = cgate.wait_log(r"INFO close .*sni=vm1\.other\.test ", since=mark)[0]
    assert parse_kv(line)["client_cert"] == r"/O=vmgate\x20e2e/CN=alice", line


def test_proxy_v2_cn(cgate, certs, cas):
    rc, out, err = get(cgate, certs, cas["alice"], port="pp", path="/")
    assert rc == 0, (rc, out, err)
    kv = parse_kv(out.strip())
    # PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS, verified
    assert kv["client"] == "7" and kv["verify"] == "0", out
    assert kv["s22"] == "alice", out
    assert kv["s21"] in ("TLSv1.3", "TLSv1.2"), out


@pytest.mark.parametrize("who,cn", [("two-cns", None), ("jurgen", "j\u00fcrgen")])
def test_proxy_v2_cn_whole_or_none(cgate, certs, cas, who, cn):
    """The CN the VM may authorise on is the certificate's one common
    name, in UTF-8, or none: a subject with two has none (it was the
    first, 'alice', of /CN=alice/CN=bob)."""
    rc, out, err = get(cgate, certs, cas[who], port="pp", path="/")
    assert rc == 0, (rc, out, err)
    kv = parse_kv(out.strip())
    assert kv["client"] == "7" and kv["verify"] == "0", out
    assert kv.get("s22") == cn, out


def test_reload_ca(cgate, certs, cas):
    """The CA file changes: the watched file reloads, and the other CA's
    certificates are the ones accepted."""
    mark = cgate.mark()
    tmp = cgate.ca_file + ".new"
    shutil.copyfile(cas["other"].cert, tmp)
    os.rename(tmp, cgate.ca_file)
    deadline = time.monotonic() + 10
    while True:
        rc, out, err = get(cgate, certs, cas["mallory"])
        if rc == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert rc == 0 and out == "ok vm1\n", (rc, out, err, cgate.tail(since=mark))
    rc, out, err = get(cgate, certs, cas["alice"])
    assert rc != 0 and "alert unknown ca" in err, (rc, out, err)
    shutil.copyfile(cas["good"].cert, tmp)
    os.rename(tmp, cgate.ca_file)
