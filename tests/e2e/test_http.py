"""1. HTTP/1.1 through vmgate with curl: IPv4 and IPv6 clients (dual-stack
listener), an upload, SNI case-insensitivity, and the close log line.

The VM here speaks only HTTP/1.1 while the gate offers ALPN [h2, http/1.1];
curl would pick h2 and get nothing sensible back, so these tests pass
--http1.1 (test_h2.py covers h2)."""

import hashlib
import os

from e2e_util import curl, peer_re, tls_connect


def health(certs, host, addr, extra=()):
    return curl(["--http1.1", "--cacert", certs.ca, "--resolve", "%s:3000:%s" % (host, addr),
                 "-w", "|%{http_code}|%{local_port}"] + list(extra) +
                ["https://%s:3000/health" % host], timeout=10)


def split(r):
    body, code, lport = r.stdout.rsplit(b"|", 2)
    return body, code, int(lport or 0)


def test_curl_health_ipv4(live_gate, certs):
    mark = live_gate.mark()  # the client's port may have been used before
    r = health(certs, "vm1.vm.test", "127.0.0.1")
    assert r.returncode == 0, (r, live_gate.tail())
    body, code, lport = split(r)
    assert (code, body) == (b"200", b"ok vm1\n"), (r, live_gate.tail())
    live_gate.wait_log(r"INFO close .*%s.*vm=vm1 vm_port=3000 " % peer_re(lport), timeout=5,
                       since=mark)


def test_curl_health_ipv6(live_gate, certs):
    mark = live_gate.mark()
    r = health(certs, "vm1.vm.test", "[::1]")
    assert r.returncode == 0, (r, live_gate.tail())
    body, code, lport = split(r)
    assert (code, body) == (b"200", b"ok vm1\n"), (r, live_gate.tail())
    # the peer really is an IPv6 client
    live_gate.wait_log(r"INFO close peer=\[::1\]:%d .*vm=vm1 vm_port=3000 " % lport, timeout=5,
                       since=mark)


def test_curl_put_upload(live_gate, certs, tmp_path):
    data = os.urandom(5 << 20)
    f = tmp_path / "upload.bin"
    f.write_bytes(data)
    r = curl(["--http1.1", "--cacert", certs.ca, "--resolve", "vm1.vm.test:3000:127.0.0.1",
              "-T", str(f), "https://vm1.vm.test:3000/upload"], timeout=30)
    assert r.returncode == 0, (r, live_gate.tail())
    assert r.stdout.decode() == "%s %d\n" % (hashlib.sha256(data).hexdigest(), len(data)), (
        r, live_gate.tail())


def test_curl_post_data(live_gate, certs):
    data = b"field=value&x=" + b"y" * 10000
    r = curl(["--http1.1", "--cacert", certs.ca, "--resolve", "vm1.vm.test:3000:127.0.0.1",
              "--data-binary", data.decode(), "https://vm1.vm.test:3000/post"], timeout=10)
    assert r.stdout.decode() == "%s %d\n" % (hashlib.sha256(data).hexdigest(), len(data)), (
        r, live_gate.tail())


def test_sni_is_case_insensitive(live_gate, certs):
    s = tls_connect(certs.client_ctx(), "VM1.Vm.TEST", 3000)
    with s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: vm1.vm.test\r\nConnection: close\r\n\r\n")
        s.settimeout(5)
        got = b""
        while True:
            try:
                d = s.recv(4096)
            except OSError:
                break
            if not d:
                break
            got += d
    assert got.startswith(b"HTTP/1.1 200") and got.endswith(b"ok vm1\n"), (got, live_gate.tail())


def test_keepalive_many_requests(live_gate, certs):
    """Several requests on one connection (curl reuses it)."""
    urls = ["https://vm1.vm.test:3000/health"] * 20
    r = curl(["--http1.1", "--cacert", certs.ca, "--resolve", "vm1.vm.test:3000:127.0.0.1"] + urls,
             timeout=20)
    assert r.returncode == 0 and r.stdout == b"ok vm1\n" * 20, (r, live_gate.tail())


def test_curl_default_alpn_http11_vm(live_gate, certs):
    """What a user types first: plain `curl https://vm1.vm.test:3000/health`
    (curl offers h2 and http/1.1) against a VM that speaks HTTP/1.1. The
    fleet's config offers only http/1.1 on port 3000 (tls.alpn_ports), so
    curl speaks HTTP/1.1 and the VM understands it."""
    r = curl(["--cacert", certs.ca, "--resolve", "vm1.vm.test:3000:127.0.0.1",
              "-w", "|VER=%{http_version}",
              "https://vm1.vm.test:3000/health"], timeout=10)
    assert r.returncode == 0 and r.stdout == b"ok vm1\n|VER=1.1", r


def test_alpn_default_list_on_other_ports(live_gate, certs):
    """Ports without an alpn_ports entry keep tls.alpn: h2 is chosen for a
    client that offers h2 and http/1.1 (port 8443 runs an h2c VM)."""
    r = curl(["--cacert", certs.ca, "--resolve", "vm1.vm.test:8443:127.0.0.1",
              "-w", "|VER=%{http_version}",
              "https://vm1.vm.test:8443/hello.txt"], timeout=10)
    assert r.returncode == 0 and r.stdout.endswith(b"|VER=2"), r
