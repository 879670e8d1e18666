#!/usr/bin/python3
"""fuzz/mkseeds.py: write the hand-made seeds of fuzz/corpus/clienthello/
(the tmpl-* and raw-* files): template-mode extension blocks taken from the
real hellos in tests/fixtures/hello, and one seed per rule of tls/hello.c
that real clients never break. Run from the repository root; the files it
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
write("tmpl-dup", b"\xbf" + sni(host) + sni(host))
write("tmpl-ext-truncated", b"\xbf" + sni(host) + b"\x00\x10\x00")
write("tmpl-empty", b"\xbf")

# Raw mode.
curl = records(open(os.path.join(FIX, "curl-h2.bin"), "rb").read())
write("raw-records-129", b"\x3f" + frame(curl, 4))  # too many records
write("raw-records-128", b"\x3f" + frame(curl, (len(curl) + 127) // 128))
body = b"\x03\x03" + b"\x00" * 20
write("raw-truncated-hello", b"\x3f" + frame(b"\x01" + struct.pack("!I", len(body))[1:] + body, 16384))
write("raw-sslv2", b"\x3f\x80\x2e\x01\x03\x01\x00\x15\x00\x00\x00\x10")
write("raw-http", b"\x3fGET / HTTP/1.1\r\nHost: x\r\n\r\n")
write("raw-max512", b"\x7f" + open(os.path.join(FIX, "openssl-big-alpn.bin"), "rb").read())
