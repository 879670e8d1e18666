"""Issue 15 item 2: TLS passthrough per domain (domains[].tls: passthrough).

A private vmgate has two domains on the same listener ports: pass.test
(passthrough) and vm.test (terminated, vmgate's certificate). In vm2's
namespace: `openssl s_server` with a certificate of its own, from a CA
vmgate knows nothing of, which curl checks (--cacert of that CA, through
--resolve); and a raw TCP recorder that sends back every byte it got,
once the client's side ends, so a test sees what reached the VM. The
recorder's port 9303 gets a PROXY v2 header first (proxy_protocol_ports):
PP2_TYPE_AUTHORITY from the SNI, no PP2_TYPE_SSL. Refusals (an unknown
VM, a denied port) happen from the raw ClientHello, before any VM."""

import os
import socket
import struct
import subprocess

import pytest

from conftest import PY
from e2e_net import free_ports, stop_process, wait_tcp
from e2e_util import (own_gate_head, Gate, Hello, curl, echo_roundtrip, parse_kv, plaintext_alerts,
                      read_answer)

SSERVER_PORT, RECORD_PORT, RECORD_PP_PORT, NOTHING_PORT = 9301, 9302, 9303, 9309

# Answers each connection, once the client's side ends, with everything
# it received, byte for byte.
RECORD_SCRIPT = r'''
import socket, sys, threading
port = int(sys.argv[1])

def handle(c):
    got = b""
    try:
        while True:
            d = c.recv(65536)
            if not d:
                break
            got += d
        c.sendall(got)
    finally:
        c.close()

ls = socket.socket(socket.AF_INET6)
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("::", port))
ls.listen(64)
while True:
    c, _ = ls.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()
'''


def openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True, capture_output=True)


@pytest.fixture(scope="module")
def vm_tls(workdir):
    """The VM's own CA and its certificate for vm2.pass.test."""
    d = os.path.join(workdir, "passthrough")
    os.makedirs(d, exist_ok=True)
    p = lambda n: os.path.join(d, n)  # noqa: E731
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-days", "30", "-subj", "/CN=VM owner CA", "-keyout", p("ca.key"),
            "-out", p("ca.pem"), "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl("req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:P-256", "-subj", "/CN=vm2.pass.test",
            "-keyout", p("vm.key"), "-out", p("vm.csr"))
    with open(p("vm.ext"), "w") as f:
        f.write("subjectAltName=DNS:vm2.pass.test\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", p("vm.csr"), "-CA", p("ca.pem"), "-CAkey", p("ca.key"),
            "-CAcreateserial", "-days", "30", "-out", p("vm.pem"), "-extfile", p("vm.ext"))
    return {"dir": d, "ca": p("ca.pem"), "cert": p("vm.pem"), "key": p("vm.key")}


@pytest.fixture(scope="module")
def pass_vm(fleet, workdir, vm_tls):
    vm = fleet.vms["vm2"]
    logs = os.path.join(workdir, "backend-logs")
    procs = [
        vm.spawn(["openssl", "s_server", "-accept", "[::]:%d" % SSERVER_PORT,
                  "-cert", vm_tls["cert"], "-key", vm_tls["key"], "-www", "-quiet"],
                 os.path.join(logs, "vm2-sserver.log")),
        vm.spawn([PY, "-c", RECORD_SCRIPT, str(RECORD_PORT)],
                 os.path.join(logs, "vm2-record.log")),
        vm.spawn([PY, "-c", RECORD_SCRIPT, str(RECORD_PP_PORT)],
                 os.path.join(logs, "vm2-record-pp.log")),
    ]
    try:
        for port, p in zip((SSERVER_PORT, RECORD_PORT, RECORD_PP_PORT), procs):
            wait_tcp(fleet.addr("vm2"), port, timeout=10, proc=p)
        yield
    finally:
        for p in procs:
            stop_process(p)


@pytest.fixture(scope="module")
def pgate(gate_bin, certs, fleet, workdir, pass_vm):
    """Listener ports: "tls" (pass.test -> s_server, vm.test -> echo 8080),
    "raw" (-> recorder), "pp" (-> recorder with PROXY v2), "denied" (not
    in pass.test's allowed_ports), "nothing" (a VM port nothing accepts
    on)."""
    names = ("tls", "raw", "pp", "denied", "nothing")
    ports = dict(zip(names, free_ports(len(names))))
    cfg = os.path.join(workdir, "passthrough.yaml")
    with open(cfg, "w") as f:
        f.write("\n".join([
            *own_gate_head(ports.values(), certs, other=False),
            "domains:",
            "  - suffix: pass.test",
            "    tls: passthrough",
            "    port_map: { %d: %d, %d: %d, %d: %d, %d: %d }" % (
                ports["tls"], SSERVER_PORT, ports["raw"], RECORD_PORT,
                ports["pp"], RECORD_PP_PORT, ports["nothing"], NOTHING_PORT),
            "    allowed_ports: [%d, %d, %d, %d]" % (ports["tls"], ports["raw"], ports["pp"],
                                                 ports["nothing"]),
            "    proxy_protocol: v2",
            "    proxy_protocol_ports: [%d]" % RECORD_PP_PORT,
            "  - suffix: vm.test",
            "    port_map: { %d: 8080 }" % ports["tls"],
            "    tls: terminate",
            "vms:",
            '  - { id: vm2, address: "%s" }' % fleet.addr("vm2"),
            "",
        ]))
    g = Gate(gate_bin, cfg, os.path.join(workdir, "passthrough.log"),
             ports=list(ports.values()), wait_port=ports["tls"])
    g.start()
    g.port = ports
    yield g
    g.stop()


def test_curl_checks_the_vms_own_certificate(pgate, vm_tls):
    """curl through vmgate reaches s_server's TLS: the VM's certificate,
    checked against the VM owner's CA, which vmgate has never seen."""
    mark = pgate.mark()
    port = pgate.port["tls"]
    r = curl(["--cacert", vm_tls["ca"],
              "--resolve", "vm2.pass.test:%d:127.0.0.1" % port,
              "https://vm2.pass.test:%d/" % port])
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0, r.stderr
    assert "s_server -accept [::]:%d" % SSERVER_PORT in out, out[:400]
    line = pgate.wait_log(r"INFO close .*sni=vm2\.pass\.test vm=vm2 vm_port=%d " % SSERVER_PORT,
                          since=mark)[0]
    kv = parse_kv(line)
    assert kv["reason"] == "done" and kv["tls"] == "passthrough", line
    assert int(kv["up"]) > 0 and int(kv["down"]) > 0, line


def test_s_client_verifies(pgate, vm_tls):
    port = pgate.port["tls"]
    r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port,
                        "-servername", "vm2.pass.test", "-verify_return_error",
                        "-CAfile", vm_tls["ca"], "-verify_hostname", "vm2.pass.test"],
                       input=b"", capture_output=True, timeout=20)
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0, out + r.stderr.decode(errors="replace")
    assert "Verify return code: 0 (ok)" in out, out
    assert "CN = vm2.pass.test" in out, out


def test_terminated_domain_same_port(pgate, certs):
    """vm.test on the same listener port still gets vmgate's TLS: the
    client checks vmgate's certificate, and VM port 8080's echo answers
    in plaintext what was sent."""
    mark = pgate.mark()
    echo_roundtrip(certs, port=pgate.port["tls"], host="vm2.vm.test")
    line = pgate.wait_log(r"INFO close .*sni=vm2\.vm\.test vm=vm2 vm_port=8080 ",
                          since=mark)[0]
    assert parse_kv(line)["tls"] == "TLSv1.3", line


def roundtrip(port, chunks, shut=True):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for c in chunks:
        s.sendall(c)
    if shut:
        s.shutdown(socket.SHUT_WR)
    data, how = read_answer(s, timeout=10)
    me = s.getsockname()
    s.close()
    return data, how, me


def split_hello():
    """A ClientHello in 3 records of at most 200 bytes, sent in segments
    that cut across the record boundaries, then bytes after it."""
    recs = Hello(sni="vm2.pass.test").pad(600).records(chunk=200)
    tail = b"\x17\x03\x03\x00\x05after"
    data = recs + tail
    cuts = [1, 7, 203, 204, 430, len(recs) - 2, len(data)]
    chunks, prev = [], 0
    for c in cuts:
        chunks.append(data[prev:c])
        prev = c
    return data, chunks


def test_split_hello_byte_exact(pgate):
    """The recorder gets the client's bytes from the first hello byte on,
    exactly as sent; its answer comes back exactly too."""
    data, chunks = split_hello()
    assert data.count(b"\x16\x03\x01") >= 3
    got, how, _ = roundtrip(pgate.port["raw"], chunks)
    assert how == "eof", how
    assert got == data, (len(got), len(data))


def test_proxy_v2_then_hello(pgate):
    data, chunks = split_hello()
    got, how, (ip, port, *_) = roundtrip(pgate.port["pp"], chunks)
    assert how == "eof", how
    assert got[:12] == b"\r\n\r\n\x00\r\nQUIT\n", got[:16]
    assert got[12] == 0x21 and got[13] == 0x11, got[:16]   # PROXY, TCP over IPv4
    hlen = struct.unpack("!H", got[14:16])[0]
    body, rest = got[16:16 + hlen], got[16 + hlen:]
    assert rest == data, (len(rest), len(data))
    src, dst, sport, dport = struct.unpack("!4s4sHH", body[:12])
    assert socket.inet_ntoa(src) == ip and sport == port, (body[:12], ip, port)
    assert dport == pgate.port["pp"]
    tlvs, b = {}, body[12:]
    while b:
        t, ln = b[0], struct.unpack("!H", b[1:3])[0]
        tlvs[t] = b[3:3 + ln]
        b = b[3 + ln:]
    assert tlvs.get(0x02) == b"vm2.pass.test", tlvs
    assert 0x20 not in tlvs and 0x01 not in tlvs, tlvs   # no SSL, no ALPN of ours
    assert len(tlvs.get(0x05, b"")) == 16, tlvs


@pytest.mark.parametrize("sni,port_name", [("nope.pass.test", "raw"),
                                           ("vm2.pass.test", "denied")])
def test_refused_from_the_hello(pgate, sni, port_name):
    """Unknown VM, denied port: the client gets unrecognized_name from
    vmgate, and nothing reaches a VM (the recorder would echo it)."""
    mark = pgate.mark()
    hello = Hello(sni=sni).records()
    got, how, _ = roundtrip(pgate.port[port_name], [hello], shut=False)
    assert plaintext_alerts(got) == [(2, 112)], got
    pgate.wait_log(r"WARN reject .*sni=%s reason=(unknown_vm|port_denied)" % sni.replace(".", r"\."),
                   since=mark)


def test_malformed_hello_refused(pgate):
    hello = bytearray(Hello(sni="vm2.pass.test").records())
    hello[9] ^= 0xff   # the hello's legacy_version: garbage
    hello[43] = 0xff   # session id length past the end
    got, how, _ = roundtrip(pgate.port["raw"], [bytes(hello)], shut=False)
    alerts = plaintext_alerts(got)
    assert len(alerts) == 1 and alerts[0][0] == 2, got


def test_vm_refuses(pgate):
    """Nothing accepts on the VM port: a connect_error line and, since no
    TLS has started, the internal_error alert in plaintext."""
    mark = pgate.mark()
    hello = Hello(sni="vm2.pass.test").records()
    got, how, _ = roundtrip(pgate.port["nothing"], [hello], shut=False)
    assert plaintext_alerts(got) == [(2, 80)], got
    pgate.wait_log(r"WARN connect_error .*sni=vm2\.pass\.test .*errno=111 ", since=mark)
