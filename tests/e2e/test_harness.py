"""The harness proves itself without vmgate: namespaces, backends reached
directly from the host over IPv6, certificates, and the clients the other
tests use. If one of these fails, the other tests' results mean nothing."""

import asyncio
import hashlib
import os
import socket
import ssl
import subprocess
import threading

import pytest

from conftest import H2_BODY, SSH_HOSTNAME, UUID_VM
from e2e_backend import HELLO, stream_sha256
from e2e_util import recv_all


def direct(addr, port, timeout=5):
    return socket.create_connection((addr, port), timeout=timeout)


def test_certs_chain_and_key_types(certs):
    for cert, algo, name in ((certs.vm_cert, "id-ecPublicKey", "*.vm.test"),
                             (certs.other_cert, "rsaEncryption", "*.other.test")):
        r = subprocess.run(["openssl", "verify", "-CAfile", certs.ca, cert],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
        txt = subprocess.run(["openssl", "x509", "-noout", "-text", "-in", cert],
                             capture_output=True, text=True).stdout
        assert algo in txt, txt
        assert "DNS:" + name in txt, txt
    txt = subprocess.run(["openssl", "x509", "-noout", "-text", "-in", certs.vm_cert],
                         capture_output=True, text=True).stdout
    assert "prime256v1" in txt or "P-256" in txt, txt
    txt = subprocess.run(["openssl", "x509", "-noout", "-text", "-in", certs.other_cert],
                         capture_output=True, text=True).stdout
    assert "2048 bit" in txt, txt


def test_namespaces_and_addresses(fleet):
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for vid, vm in fleet.vms.items():
        assert vm.ns in out
        assert len(vm.host_if) <= 15
        a = vm.run(["ip", "-6", "addr", "show", "dev", "eth0"]).stdout
        if vid != "ghost":
            assert vm.addr in a, a


def test_http_direct(fleet):
    r = subprocess.run(["curl", "-sS", "--max-time", "5", "-g",
                        "http://[%s]:3000/health" % fleet.addr("vm1")],
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout == "ok vm1\n", r


def test_http_put_direct(fleet, tmp_path):
    data = os.urandom(300_000)
    f = tmp_path / "up.bin"
    f.write_bytes(data)
    r = subprocess.run(["curl", "-sS", "--max-time", "10", "-g", "-T", str(f),
                        "http://[%s]:3000/upload" % fleet.addr("vm1")],
                       capture_output=True, text=True)
    assert r.stdout == "%s %d\n" % (hashlib.sha256(data).hexdigest(), len(data)), r


@pytest.mark.parametrize("vid", ["vm1", "vm2", "vm3", UUID_VM])
def test_echo_direct(fleet, vid):
    with direct(fleet.addr(vid), 8080) as s:
        s.sendall(b"ping " + vid.encode())
        s.shutdown(socket.SHUT_WR)
        assert recv_all(s, timeout=5) == b"ping " + vid.encode()


def test_sha_sink_direct(fleet):
    data = os.urandom(1 << 20)
    with direct(fleet.addr("vm2"), 3000) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        assert recv_all(s, timeout=5) == (hashlib.sha256(data).hexdigest() + "\n").encode()


def test_sha_source_direct(fleet):
    with direct(fleet.addr("vm2"), 8443) as s:
        s.sendall(b"3000000 7\n")
        got = recv_all(s, timeout=10)
    assert len(got) == 3000000
    assert hashlib.sha256(got).hexdigest() == stream_sha256(7, 3000000)


def test_greeter_direct(fleet):
    before = open(fleet.greeter_record).read()
    data = os.urandom(12345)
    with direct(fleet.addr("vm3"), 8443) as s:
        got = recv_all(s, timeout=5)
        assert got == HELLO
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        s.recv(1)
    want = "%s %d\n" % (hashlib.sha256(data).hexdigest(), len(data))
    for _ in range(100):
        if open(fleet.greeter_record).read() != before:
            break
        import time
        time.sleep(0.05)
    assert open(fleet.greeter_record).read()[len(before):] == want


def test_websocket_direct(fleet):
    import websockets

    async def go():
        async with websockets.connect("ws://[%s]:3000/" % fleet.addr("vm3"),
                                      max_size=4 << 20) as ws:
            await ws.send("text")
            assert await ws.recv() == "text"
            await ws.send(b"\x00\x01")
            assert await ws.recv() == b"\x00\x01"

    asyncio.run(asyncio.wait_for(go(), 10))


def test_h2c_direct(fleet):
    r = subprocess.run(["curl", "-sS", "--max-time", "5", "-g", "--http2-prior-knowledge",
                        "-w", "|VER=%{http_version}",
                        "http://[%s]:8443/hello.txt" % fleet.addr("vm1")],
                       capture_output=True)
    assert r.returncode == 0, r
    body, ver = r.stdout.rsplit(b"|VER=", 1)
    assert body == H2_BODY and ver == b"2", r


@pytest.mark.timeout(30)
def test_sshd_direct(fleet):
    k = fleet.ssh
    r = subprocess.run(["ssh", "-F", "/dev/null", "-i", k.client_key, "-o", "BatchMode=yes",
                        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                        "-o", "ConnectTimeout=5", "root@" + fleet.addr("vm1"),
                        "echo hello-from-vm; hostname"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 0 and r.stdout == "hello-from-vm\n%s\n" % SSH_HOSTNAME, (
        r, fleet.proc_log("vm1", 22))


def test_vm_port_closed_is_refused(fleet):
    with pytest.raises(ConnectionRefusedError):
        direct(fleet.addr(UUID_VM), 3000).close()


def test_ipv4_only_backend(fleet):
    """The 0.0.0.0-only echo refuses IPv6 but works over IPv4 in the VM."""
    with pytest.raises(ConnectionRefusedError):
        direct(fleet.addr(UUID_VM), 8443).close()
    out = fleet.vms[UUID_VM].run(["ss", "-Hltn"]).stdout
    assert "0.0.0.0:8443" in out, out
    code = ("import socket; s=socket.create_connection(('127.0.0.1',8443),3); "
            "s.sendall(b'v4'); s.shutdown(1); print(s.recv(10).decode())")
    r = fleet.vms[UUID_VM].run(["/usr/bin/python3", "-c", code])
    assert r.stdout.strip() == "v4", r


def test_ghost_times_out(fleet):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.settimeout(1.5)
    with pytest.raises(socket.timeout):
        s.connect((fleet.addr("ghost"), 3000))
    s.close()


def _tls_server(ctx_factory):
    """A throwaway TLS echo server on 127.0.0.1 to prove the clients."""
    ls = socket.create_server(("127.0.0.1", 0))
    port = ls.getsockname()[1]

    def serve():
        ls.settimeout(10)
        for _ in range(4):
            try:
                c, _ = ls.accept()
            except OSError:
                return
            try:
                with ctx_factory().wrap_socket(c, server_side=True) as t:
                    t.settimeout(5)
                    d = t.recv(100)
                    t.sendall(d)
            except (OSError, ssl.SSLError):
                pass
        ls.close()

    threading.Thread(target=serve, daemon=True).start()
    return port


def test_clients_trust_certs(certs):
    def ctx_factory():
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(certs.vm_cert, certs.vm_key)
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        return ctx
    port = _tls_server(ctx_factory)
    # python client
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    with certs.client_ctx().wrap_socket(raw, server_hostname="vm1.vm.test") as t:
        t.sendall(b"hi")
        assert t.recv(10) == b"hi"
    # curl (verifies the chain and the name; the server is not HTTP so we
    # only expect the TLS handshake to succeed: exit code is not 35/60)
    r = subprocess.run(["curl", "-sS", "--max-time", "5", "--cacert", certs.ca,
                        "--resolve", "vm2.vm.test:%d:127.0.0.1" % port,
                        "https://vm2.vm.test:%d/" % port], capture_output=True, text=True)
    assert r.returncode not in (35, 51, 58, 60, 77), r
    # openssl s_client with verification
    r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port,
                        "-servername", "vm3.vm.test", "-verify_return_error",
                        "-CAfile", certs.ca, "-verify_hostname", "vm3.vm.test"],
                       input="x", capture_output=True, text=True, timeout=10)
    assert "Verify return code: 0 (ok)" in r.stdout, r
