#!/usr/bin/python3
"""fuzz/mkseeds.py: write the hand-made seeds of fuzz/corpus/clienthello/
(the tmpl-* and raw-* files): template-mode extension blocks taken from the
real hellos in tests/fixtures/hello, and one seed per rule of tls/hello.c
that real clients never break; and those of fuzz/corpus/fleet/ and
fuzz/corpus/admin/. Run from the repository root; the files it
writes are committed, so this only documents how they were made."""
import os
import struct

FIX = "tests/fixtures/hello"
OUT = "fuzz/corpus/clienthello"


def u8(b): return struct.pack("!B", len(b)) + b
def u16(b): return struct.pack("!H", len(b)) + b
def ext(t, body): return struct.pack("!H", t) + u16(body)


def records(data):
    out, i = [], 0
    while i < len(data):
        n = struct.unpack("!H", data[i + 3:i + 5])[0]
        out.append(data[i + 5:i + 5 + n])
        i += 5 + n
    return b"".join(out)


def extensions(msg):
    # msg: handshake header + ClientHello body
    b = msg[4:]
    i = 2 + 32
    i += 1 + b[i]
    i += 2 + struct.unpack("!H", b[i:i + 2])[0]
    i += 1 + b[i]
    n = struct.unpack("!H", b[i:i + 2])[0]
    return b[i + 2:i + 2 + n]


def frame(msg, frag):
    out = b""
    for i in range(0, len(msg), frag):
        part = msg[i:i + frag]
        out += b"\x16\x03\x01" + u16(part)
    return out


def write(name, data):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)


sni = lambda name: ext(0, u16(b"\x00" + u16(name)))
alpn = lambda *names: ext(16, u16(b"".join(u8(n) for n in names)))
versions = lambda *v: ext(43, u8(b"".join(struct.pack("!H", x) for x in v)))
host = b"vm1.vm.vers.sh"

for f in sorted(os.listdir(FIX)):
    if f.endswith(".bin"):
        msg = records(open(os.path.join(FIX, f), "rb").read())
        write("tmpl-" + f, b"\xbf" + extensions(msg))

# Template mode (0xbf: one record; 0x81: records of 122 bytes).
write("tmpl-minimal", b"\xbf" + sni(host) + alpn(b"h2", b"http/1.1") +
      versions(0x0a0a, 0x0304, 0x0303))
write("tmpl-split", b"\x81" + sni(host) + alpn(b"h2", b"http/1.1") +
      versions(0x0304))
write("tmpl-sni-empty-list", b"\xbf" + ext(0, u16(b"")))
write("tmpl-sni-empty-name", b"\xbf" + ext(0, u16(b"\x00" + u16(b""))))
write("tmpl-sni-256", b"\xbf" + sni(b"a" * 256))
write("tmpl-sni-255", b"\xbf" + sni((b"a" * 63 + b".") * 3 + b"a" * 63))
write("tmpl-sni-nul", b"\xbf" + sni(b"a\x00.example"))
write("tmpl-sni-two", b"\xbf" + ext(0, u16(b"\x00" + u16(b"a") +
                                            b"\x00" + u16(b"b"))))
write("tmpl-sni-type1", b"\xbf" + ext(0, u16(b"\x01" + u16(b"a"))))
write("tmpl-sni-trailing", b"\xbf" + ext(0, u16(b"\x00" + u16(b"a")) + b"x"))
write("tmpl-sni-truncated", b"\xbf" + ext(0, u16(b"\x00\x00")))
write("tmpl-alpn-empty-list", b"\xbf" + ext(16, u16(b"")))
write("tmpl-alpn-empty-name", b"\xbf" + ext(16, u16(b"\x00")))
write("tmpl-alpn-truncated", b"\xbf" + ext(16, u16(b"\x05h2")))
write("tmpl-alpn-trailing", b"\xbf" + ext(16, u16(b"\x02h2") + b"x"))
write("tmpl-versions-grease", b"\xbf" + versions(0x0a0a, 0xfafa))
write("tmpl-versions-odd", b"\xbf" + ext(43, u8(b"\x03\x04\x03")))
write("tmpl-versions-empty", b"\xbf" + ext(43, u8(b"")))
write("tmpl-versions-trailing", b"\xbf" + ext(43, u8(b"\x03\x04") + b"x"))
write("tmpl-sigalgs-odd", b"\xbf" + ext(13, u16(b"\x04\x03\x08")))
write("tmpl-sigalgs-empty", b"\xbf" + ext(13, u16(b"")))
write("tmpl-sigalgs-trailing", b"\xbf" + ext(13, u16(b"\x04\x03") + b"x"))
write("tmpl-dup", b"\xbf" + sni(host) + sni(host))
write("tmpl-ext-truncated", b"\xbf" + sni(host) + b"\x00\x10\x00")
write("tmpl-empty", b"\xbf")

# Raw mode.
curl = records(open(os.path.join(FIX, "curl-h2.bin"), "rb").read())
# 4-byte records: 129 of them, once over a cap on the record count.
write("raw-records-129", b"\x3f" + frame(curl, 4))
write("raw-records-128", b"\x3f" + frame(curl, (len(curl) + 127) // 128))
body = b"\x03\x03" + b"\x00" * 20
write("raw-truncated-hello", b"\x3f" + frame(b"\x01" + struct.pack("!I", len(body))[1:] + body, 16384))
write("raw-sslv2", b"\x3f\x80\x2e\x01\x03\x01\x00\x15\x00\x00\x00\x10")
write("raw-http", b"\x3fGET / HTTP/1.1\r\nHost: x\r\n\r\n")
# legacy_version 0x0304 (RFC 8446 forbids it) with supported_versions: the
# extension alone decides.
write("raw-legacy-13", b"\x3f" + frame(curl[:4] + b"\x03\x04" + curl[6:], 16384))


def with_versions(msg, *v):
    """|msg| with its supported_versions listing |v| instead."""
    exts, out, i = extensions(msg), b"", 0
    while i < len(exts):
        t, n = struct.unpack("!HH", exts[i:i + 4])
        out += versions(*v) if t == 43 else exts[i:i + 4 + n]
        i += 4 + n
    head = msg[:len(msg) - len(exts) - 2]
    body = head[4:] + u16(out)
    return b"\x01" + struct.pack("!I", len(body))[1:] + body


# TLS 1.2 and a version nobody speaks yet: BoringSSL agrees on 1.2.
write("raw-versions-future", b"\x3f" + frame(with_versions(curl, 0x0303, 0x0305), 16384))
write("raw-max512", b"\x7f" + open(os.path.join(FIX, "openssl-big-alpn.bin"), "rb").read())


def padded(body_len):
    """A ClientHello whose body is |body_len| bytes (a padding extension)."""
    head = (b"\x03\x03" + b"\x00" * 32 + b"\x00" + u16(b"\x13\x01\xc0\x2b") +
            b"\x01\x00")
    base = len(head) + 2 + len(sni(host)) + 4
    body = head + u16(sni(host) + ext(21, b"\x00" * (body_len - base)))
    assert len(body) == body_len
    return b"\x01" + struct.pack("!I", body_len)[1:] + body


# max_len counts the body, as BoringSSL does: 16,380 bytes fill one record,
# 16,384 is the most it takes (two records), 16,385 is too large.
write("raw-body-16380", b"\x3f" + frame(padded(16380), 16384))
write("raw-body-16384", b"\x3f" + frame(padded(16384), 16384))
write("raw-body-16385", b"\x3f" + frame(padded(16385), 16384))

# Framing mode: byte 0 0xc0 | chunk - 1, then four record sizes - 1.
for f in ("curl-h2.bin", "openssl-fragmented.bin", "gnutls-cli.bin"):
    data = open(os.path.join(FIX, f), "rb").read()
    write("frame-1-" + f, b"\xc0" + bytes([0, 0, 0, 0]) + data)
    write("frame-mixed-" + f, b"\xc6" + bytes([0, 2, 1, 99]) + data)
write("frame-body-16384", b"\xff" + bytes([255] * 4) +
      frame(padded(16384), 16384))


# fuzz/corpus/fleet/: one selector byte (fuzz/fleet.c), then what etcd's
# gRPC gateway (3.4) sends, shaped as captured from a real one.
import base64
import json as _json

FLEET = "fuzz/corpus/fleet"
os.makedirs(FLEET, exist_ok=True)
b64 = lambda s: base64.b64encode(s.encode()).decode()
hdr = {"cluster_id": "14841639068965178418", "member_id": "10276657743932975437",
       "revision": "42", "raft_term": "3"}


def fleet(name, sel, data):
    if isinstance(data, (dict, list)):
        data = _json.dumps(data, separators=(",", ":"))
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(FLEET, name), "wb") as f:
        f.write(bytes([sel]) + data)


kv = lambda k, v, rev: {"key": b64("/vmgate/v1/vms/" + k), "create_revision": "5",
                        "mod_revision": str(rev), "version": "1", "value": b64(v)}
fleet("vm-ok", 0, '{"address": "fd00::10", "ports": [3000, "8000-8100"]}')
fleet("vm-noports", 0, '{"address":"fd00::10"}')
fleet("vm-v4", 0, '{"address":"10.0.0.1"}')
fleet("vm-badports", 0, '{"address":"fd00::1","ports":["9-1",0,70000]}')
fleet("vm-key", 0, "45a68069-defc-4233-9865-6298d87053af")
fleet("range", 1, {"header": hdr, "kvs": [kv("vm1", '{"address":"fd00::1"}', 40),
                                          kv("vm2", '{"address":"fd00::2"}', 41)],
                   "more": True, "count": "3"})
fleet("range-empty", 1, {"header": hdr})
fleet("watch-created", 2, {"result": {"header": hdr, "created": True}})
fleet("watch-events", 2, {"result": {"header": hdr, "events": [
    {"kv": kv("vm1", '{"address":"fd00::1"}', 42)},
    {"type": "DELETE", "kv": {"key": b64("/vmgate/v1/vms/vm2"), "mod_revision": "42"}}]}})
fleet("watch-progress", 2, {"result": {"header": hdr}})
fleet("watch-compacted", 2, {"result": {"header": hdr, "canceled": True,
                                        "compact_revision": "30"}})
fleet("watch-error", 2, {"error": {"grpc_code": 14, "http_code": 503,
                                   "message": "etcdserver: no leader",
                                   "http_status": "Service Unavailable"}})
fleet("txn", 3, {"header": hdr, "succeeded": True, "responses": [{"response_put": {"header": {"revision": "42"}}}]})
fleet("lease", 4, {"header": hdr, "ID": "7587869937455345162", "TTL": "10"})
fleet("keepalive", 4, {"result": {"header": hdr, "ID": "7587869937455345162", "TTL": "10"}})
fleet("token", 5, {"header": hdr, "token": "QhvnRqHbChfZhMGM.9"})
fleet("error", 6, {"error": "etcdserver: mvcc: required revision has been compacted",
                   "code": 11, "message": "etcdserver: mvcc: required revision has been compacted"})
fleet("through-watch", 7, '{"address":"fd00::10","ports":[22]}')
fleet("stek", 8, {"name": "00112233445566778899aabbccddeeff",
                  "key": base64.b64encode(bytes(range(64))).decode(),
                  "not_before": 1764800000, "not_after": 1764864800})
# A watch stream (a chunk-size seed byte, then the lines): a created line, an
# empty one, an event, half of the next.
fleet("lines", 9, b"\x07" + _json.dumps({"result": {"header": hdr, "created": True}},
                                        separators=(",", ":")).encode()
      + b"\n\n" + _json.dumps({"result": {"header": hdr, "events": [
          {"kv": kv("vm1", '{"address":"fd00::1"}', 42)}]}}, separators=(",", ":")).encode()
      + b"\n{\"result\":{")


# fuzz/corpus/admin/: the admin API's requests, a split byte first (odd:
# reads of 1-300 bytes; with 0x80 set: of 1-7 bytes).
ADMIN = "fuzz/corpus/admin"
AUTH = "Authorization: Bearer s3cret-token\r\n"


def admin(name, split, data):
    os.makedirs(ADMIN, exist_ok=True)
    with open(os.path.join(ADMIN, name), "wb") as f:
        f.write(bytes([split]) + data.encode())


admin("health", 0x01, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
admin("vms", 0x81, "GET /vms HTTP/1.1\r\nHost: x\r\n" + AUTH + "\r\n")
admin("vm-get", 0x03, "GET /vms/vm1 HTTP/1.1\r\n" + AUTH + "\r\n")
body = '{"address": "fd00::10", "ports": [22, "8000-8099"]}'
admin("vm-put", 0x85, "PUT /vms/vm1 HTTP/1.1\r\nHost: x\r\n" + AUTH
      + "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
      % (len(body), body))
admin("vm-put-continue", 0x07, "PUT /vms/vm2 HTTP/1.1\r\n" + AUTH
      + "Expect: 100-continue\r\nContent-Length: %d\r\n\r\n%s"
      % (len(body), body))
admin("vm-put-chunked", 0x89, "PUT /vms/vm3 HTTP/1.1\r\n" + AUTH
      + "Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n"
      % (len(body), body))
admin("vm-delete", 0x0b, "DELETE /vms/vm1 HTTP/1.1\r\n" + AUTH
      + "Connection: close\r\n\r\n")
admin("vm-stats", 0x8d, "GET /vms/vm1/stats HTTP/1.1\r\n" + AUTH + "\r\n")
admin("stats-top", 0x0f, "GET /stats/vms?top=25 HTTP/1.1\r\n" + AUTH + "\r\n")
admin("pipelined", 0x91, "GET /health HTTP/1.1\r\n\r\n"
      "POST /reload HTTP/1.1\r\n" + AUTH + "Content-Length: 0\r\n\r\n"
      "GET /metrics HTTP/1.0\r\n" + AUTH + "\r\n")
admin("fleet-head", 0x13, "HEAD /fleet HTTP/1.1\r\n" + AUTH + "\r\n")
admin("bad-auth-twice", 0x95, "GET /vms HTTP/1.1\r\n" + AUTH + AUTH + "\r\n")
admin("absolute-target", 0x17, "GET http://admin:9901/vms/a%2Fb?x=1#f HTTP/1.1\r\n"
      + AUTH + "\r\n")
admin("body-too-big", 0x99, "PUT /vms/vm1 HTTP/1.1\r\nContent-Length: 70000\r\n\r\n{")
admin("malformed", 0x1b, "GET /vms HTTP/1.1\r\nBad Header\r\n\r\n")
admin("target-past-headers", 0x1d, "GET /vms/" + "a" * 16400 + " HTTP/1.1\r\n"
      + AUTH + "\r\n")
