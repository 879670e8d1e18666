"""Issue 15 item 1: the PROXY protocol toward the VM.

A private vmgate sends a PROXY header to vm2's services: v2 on the
vm.test domain (VM ports 9201 haproxy, 9202 nginx, 9204 a TLV dump),
v1 on other.test (VM port 9203, nginx), and none on VM port 9205 of
vm.test (outside proxy_protocol_ports: an echo that must see the
client's bytes first). Real parsers answer with what they read:
HAProxy 2.6 (`accept-proxy`: src, dst, fc_pp_authority,
fc_pp_unique_id) and nginx (`listen ... proxy_protocol`:
$proxy_protocol_addr and friends). Each answer is checked against the
test client's own address and port, for an IPv6 client (::1) and an
IPv4 one (127.0.0.1, which must arrive as AF_INET: haproxy then shows
a dotted quad), and the unique id against vmgate's log line."""

import os
import socket

import pytest

from conftest import PY
from e2e_net import free_ports, stop_process, wait_tcp
from e2e_util import own_gate_head, Gate, parse_kv, recv_all

HAPROXY_PORT, NGINX_V2_PORT, NGINX_V1_PORT, DUMP_PORT, PLAIN_PORT = (
    9201, 9202, 9203, 9204, 9205)

HAPROXY_CFG = """global
  log stderr format raw local0
defaults
  mode http
  timeout client 10s
  timeout connect 5s
  timeout server 10s
frontend pp
  bind :::%d v4v6 accept-proxy
  http-request return status 200 content-type text/plain lf-string "src=%%[src] sport=%%[src_port] dst=%%[dst] dport=%%[dst_port] authority=%%[fc_pp_authority] uid=%%[fc_pp_unique_id]\\n"
""" % HAPROXY_PORT

NGINX_CFG = """daemon off;
master_process off;
pid {d}/nginx.pid;
error_log stderr info;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  server {{
    listen [::]:{v2} proxy_protocol;
    listen [::]:{v1} proxy_protocol;
    default_type text/plain;
    return 200 "src=$proxy_protocol_addr sport=$proxy_protocol_port dst=$proxy_protocol_server_addr dport=$proxy_protocol_server_port\\n";
  }}
}}
"""

# Reads a PROXY v2 header and answers with what it holds, one key=value a
# TLV, then echoes; on the plain port, echoes what comes first.
DUMP_SCRIPT = r'''
import socket, struct, sys, threading
port, mode = int(sys.argv[1]), sys.argv[2]

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
        if mode == "plain":
            c.sendall(b"first=" + c.recv(100).hex().encode() + b"\n")
            return
        h = recvn(c, 16)
        assert h[:12] == b"\r\n\r\n\x00\r\nQUIT\n", h
        body = recvn(c, struct.unpack("!H", h[14:16])[0])
        fam = h[13]
        n = 12 if fam == 0x11 else 36
        out = ["fam=%02x" % fam]
        tlvs = body[n:]
        def walk(b, prefix):
            while b:
                t, l = b[0], struct.unpack("!H", b[1:3])[0]
                v = b[3:3 + l]
                if t == 0x20:
                    out.append("ssl_client=%d ssl_verify=%d" % (v[0], struct.unpack("!I", v[1:5])[0]))
                    walk(v[5:], "ssl_")
                else:
                    out.append("%st%02x=%s" % (prefix, t, v.decode()))
                b = b[3 + l:]
        walk(tlvs, "")
        c.sendall((" ".join(out) + "\n").encode())
    except Exception as e:
        c.sendall(("error=%r\n" % e).encode())
    finally:
        c.close()

ls = socket.socket(socket.AF_INET6)
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("::", port))
ls.listen(64)
print("READY", flush=True)
while True:
    c, _ = ls.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()
'''


@pytest.fixture(scope="module")
def pp_vm(fleet, workdir):
    """haproxy, nginx and the dump services in vm2's namespace."""
    vm = fleet.vms["vm2"]
    d = os.path.join(workdir, "pp")
    os.makedirs(d, exist_ok=True)
    logs = os.path.join(workdir, "backend-logs")
    with open(os.path.join(d, "haproxy.cfg"), "w") as f:
        f.write(HAPROXY_CFG)
    with open(os.path.join(d, "nginx.conf"), "w") as f:
        f.write(NGINX_CFG.format(d=d, v2=NGINX_V2_PORT, v1=NGINX_V1_PORT))
    procs = [
        vm.spawn(["/usr/sbin/haproxy", "-db", "-f", os.path.join(d, "haproxy.cfg")],
                 os.path.join(logs, "vm2-haproxy.log")),
        vm.spawn(["/usr/sbin/nginx", "-p", d, "-c", os.path.join(d, "nginx.conf")],
                 os.path.join(logs, "vm2-nginx.log")),
        vm.spawn([PY, "-c", DUMP_SCRIPT, str(DUMP_PORT), "dump"],
                 os.path.join(logs, "vm2-ppdump.log")),
        vm.spawn([PY, "-c", DUMP_SCRIPT, str(PLAIN_PORT), "plain"],
                 os.path.join(logs, "vm2-ppplain.log")),
    ]
    try:
        for port, p in zip((HAPROXY_PORT, NGINX_V2_PORT, DUMP_PORT, PLAIN_PORT),
                           (procs[0], procs[1], procs[2], procs[3])):
            wait_tcp(fleet.addr("vm2"), port, timeout=10, proc=p)
        wait_tcp(fleet.addr("vm2"), NGINX_V1_PORT, timeout=10, proc=procs[1])
        yield
    finally:
        for p in procs:
            stop_process(p)


@pytest.fixture(scope="module")
def ppgate(gate_bin, certs, fleet, workdir, pp_vm):
    """gate ports -> VM ports: hap, ngx2, dump, plain on vm.test (v2 but
    for the plain port), ngx1 on other.test (v1)."""
    names = ("hap", "ngx2", "dump", "plain", "ngx1")
    ports = dict(zip(names, free_ports(len(names))))
    vm_port = {"hap": HAPROXY_PORT, "ngx2": NGINX_V2_PORT, "dump": DUMP_PORT,
               "plain": PLAIN_PORT, "ngx1": NGINX_V1_PORT}
    vmt = [n for n in names if n != "ngx1"]
    cfg = os.path.join(workdir, "pp.yaml")
    with open(cfg, "w") as f:
        f.write("\n".join([
            *own_gate_head(ports.values(), certs, other=True),
            "domains:",
            "  - suffix: vm.test",
            "    port_map: { %s }" % ", ".join("%d: %d" % (ports[n], vm_port[n]) for n in vmt),
            "    proxy_protocol: v2",
            "    proxy_protocol_ports: [%d, %d, %d]" % (HAPROXY_PORT, NGINX_V2_PORT, DUMP_PORT),
            "  - suffix: other.test",
            "    port_map: { %d: %d }" % (ports["ngx1"], NGINX_V1_PORT),
            "    allowed_ports: [%d]" % ports["ngx1"],
            "    proxy_protocol: v1",
            "vms:",
            '  - { id: vm2, address: "%s" }' % fleet.addr("vm2"),
            "",
        ]))
    g = Gate(gate_bin, cfg, os.path.join(workdir, "pp.log"), ports=list(ports.values()),
             wait_port=ports["hap"])
    g.start()
    g.port = ports
    yield g
    g.stop()


def ask(certs, host, port, addr, request=b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"):
    """One TLS request from |addr| -> (client (ip, port), answer, TLS facts)."""
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    raw = socket.socket(fam, socket.SOCK_STREAM)
    raw.settimeout(10)
    raw.connect((addr, port))
    me = raw.getsockname()[:2]
    s = certs.client_ctx(alpn=["http/1.1"]).wrap_socket(raw, server_hostname=host)
    facts = (s.version(), s.cipher()[0], s.selected_alpn_protocol())
    s.sendall(request)
    data = recv_all(s, timeout=10)
    s.close()
    return me, data.decode(errors="replace"), facts


def answer_kv(text):
    for line in text.splitlines():
        if line.startswith(("src=", "fam=", "first=", "error=")):
            return parse_kv(line)
    raise AssertionError("no answer line in %r" % text)


@pytest.mark.parametrize("addr", ["::1", "127.0.0.1"])
def test_haproxy_v2(ppgate, certs, addr):
    mark = ppgate.mark()
    (ip, port), text, _ = ask(certs, "vm2.vm.test", ppgate.port["hap"], addr)
    kv = answer_kv(text)
    # haproxy shows an AF_INET source as a dotted quad: sent as IPv4
    assert kv["src"] == ip and kv["sport"] == str(port), (ip, port, text)
    assert kv["dst"] == addr and kv["dport"] == str(ppgate.port["hap"]), text
    assert kv["authority"] == "vm2.vm.test", text
    line = ppgate.wait_log(r"INFO close .*:%d .*vm=vm2 vm_port=%d " % (port, HAPROXY_PORT),
                           since=mark)[0]
    assert kv["uid"] == parse_kv(line)["id"], (text, line)


@pytest.mark.parametrize("addr", ["::1", "127.0.0.1"])
def test_nginx_v2(ppgate, certs, addr):
    (ip, port), text, _ = ask(certs, "vm2.vm.test", ppgate.port["ngx2"], addr)
    kv = answer_kv(text)
    assert kv["src"] == ip and kv["sport"] == str(port), (ip, port, text)
    assert kv["dst"] == addr and kv["dport"] == str(ppgate.port["ngx2"]), text


@pytest.mark.parametrize("addr", ["::1", "127.0.0.1"])
def test_nginx_v1(ppgate, certs, addr):
    (ip, port), text, _ = ask(certs, "vm2.other.test", ppgate.port["ngx1"], addr)
    kv = answer_kv(text)
    assert kv["src"] == ip and kv["sport"] == str(port), (ip, port, text)
    assert kv["dst"] == addr and kv["dport"] == str(ppgate.port["ngx1"]), text


def test_v2_tlvs(ppgate, certs):
    """Every TLV, with the values the client's TLS agreed."""
    mark = ppgate.mark()
    (ip, port), text, (version, cipher, alpn) = ask(
        certs, "vm2.vm.test", ppgate.port["dump"], "::1", request=b"x")
    kv = answer_kv(text)
    assert kv["fam"] == "21", text
    assert kv["t01"] == alpn == "http/1.1", text
    assert kv["t02"] == "vm2.vm.test", text
    assert kv["ssl_client"] == "1" and kv["ssl_verify"] == "0", text
    assert kv["ssl_t21"] == version, (version, text)
    assert kv["ssl_t23"] == cipher, (cipher, text)
    assert kv["ssl_t24"] == "ecdsa-with-SHA256", text   # *.vm.test: ECDSA P-256
    assert kv["ssl_t25"] == "EC256", text
    line = ppgate.wait_log(r"INFO close .*:%d .*vm_port=%d " % (port, DUMP_PORT), since=mark)[0]
    assert kv["t05"] == parse_kv(line)["id"], (text, line)


def test_not_on_other_ports(ppgate, certs):
    """A VM port outside proxy_protocol_ports reads the client's bytes
    first, no header."""
    _, text, _ = ask(certs, "vm2.vm.test", ppgate.port["plain"], "::1", request=b"hello")
    assert answer_kv(text)["first"] == b"hello".hex(), text
