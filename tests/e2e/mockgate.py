#!/usr/bin/python3
"""A reference model of vmgate in Python, to prove the e2e tests themselves.

    VMGATE_BIN="/usr/bin/python3 tests/e2e/mockgate.py" make e2e

It reads the same appliance.yaml (the subset the harness writes), peeks the
ClientHello for SNI, routes like vmgate, answers a rejection with an
unrecognized_name alert before any certificate, terminates TLS with an
ssl.SSLObject over memory BIOs, connects to the VM over IPv6 and relays
bytes with half-close in both directions. It prints vmgate's log lines
(ready, reject, connect_error, close). It is slow and is not vmgate: a test
that passes here and fails against build/vmgate points at vmgate. It does
not implement --check's file:line:col messages (those tests skip on it), and its
idle timeout is a whole-connection deadline (test_idle_timeout fails on it).
"""

import argparse
import asyncio
import errno
import os
import re
import ssl
import sys
import time

import yaml

ALERT_UNRECOGNIZED_NAME = b"\x15\x03\x03\x00\x02\x02\x70"
ALERT_MISSING_EXTENSION = b"\x15\x03\x03\x00\x02\x02\x6d"


LEVELS = {"ERROR": 0, "WARN": 1, "INFO": 2, "DEBUG": 3}
MAX_LEVEL = 3


def log(level, event, **kv):
    if LEVELS[level] > MAX_LEVEL:
        return
    parts = []
    for k, v in kv.items():
        v = str(v)
        if " " in v or '"' in v or v == "":
            v = '"' + v.replace('"', '\\"') + '"'
        parts.append("%s=%s" % (k, v))
    sys.stderr.write("%s %s %s %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()),
                                        level, event, " ".join(parts)))
    sys.stderr.flush()


def fmt_addr(sa):
    host, port = sa[0], sa[1]
    if host.startswith("::ffff:") and "." in host:
        return "%s:%d" % (host[7:], port)
    if ":" in host:
        return "[%s]:%d" % (host, port)
    return "%s:%d" % (host, port)


def parse_hello(buf):
    """-> ("more"|"not_tls"|"bad"|"ok", sni or None)"""
    if not buf:
        return "more", None
    if buf[0] != 0x16:
        return "not_tls", None
    hs = b""
    i = 0
    while True:
        if len(buf) < i + 5:
            return "more", None
        if buf[i] != 0x16:
            return "bad", None
        ln = int.from_bytes(buf[i + 3:i + 5], "big")
        if len(hs) == 0 and len(buf) >= i + 9 and int.from_bytes(buf[i + 6:i + 9], "big") > 65536:
            return "too_large", None
        if len(buf) < i + 5 + ln:
            return "more", None
        hs += buf[i + 5:i + 5 + ln]
        i += 5 + ln
        if len(hs) >= 4:
            need = int.from_bytes(hs[1:4], "big") + 4
            if len(hs) >= need:
                break
            if need > 65536:
                return "too_large", None
    try:
        if hs[0] != 1:
            return "bad", None
        p = 4 + 2 + 32
        p += 1 + hs[p]
        p += 2 + int.from_bytes(hs[p:p + 2], "big")
        p += 1 + hs[p]
        if p + 2 > len(hs):
            return "ok", None
        end = p + 2 + int.from_bytes(hs[p:p + 2], "big")
        p += 2
        while p + 4 <= end:
            et = int.from_bytes(hs[p:p + 2], "big")
            el = int.from_bytes(hs[p + 2:p + 4], "big")
            body = hs[p + 4:p + 4 + el]
            if et == 0 and len(body) >= 5 and body[2] == 0:
                nl = int.from_bytes(body[3:5], "big")
                return "ok", body[5:5 + nl].decode("ascii", "replace")
            p += 4 + el
        return "ok", None
    except IndexError:
        return "bad", None


class Gate:
    def __init__(self, cfg):
        self.cfg = cfg
        lim = cfg.get("limits", {}) or {}
        self.connect_timeout = lim.get("connect_timeout_ms", 5000) / 1000.0
        self.handshake_timeout = lim.get("handshake_timeout_ms", 10000) / 1000.0
        self.idle_timeout = lim.get("idle_timeout_ms", 300000) / 1000.0
        self.vms = {str(v["id"]).lower(): v["address"] for v in cfg.get("vms", [])}
        self.domains = []
        for d in cfg.get("domains", []):
            pm = {int(k): int(v) for k, v in (d.get("port_map") or {}).items()}
            allowed = d.get("allowed_ports")
            self.domains.append((d["suffix"].lower(), pm,
                                 None if allowed is None else set(allowed)))
        self.ctxs = []
        alpn = cfg.get("tls", {}).get("alpn") or []
        for c in cfg["tls"]["certificates"]:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(c["cert"], c["key"])
            if alpn:
                ctx.set_alpn_protocols(alpn)
            import subprocess
            san = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName",
                                  "-in", c["cert"]], capture_output=True, text=True).stdout
            names = re.findall(r"DNS:([^,\s]+)", san)
            self.ctxs.append((names, ctx))

    def ctx_for(self, host):
        for names, ctx in self.ctxs:
            for n in names:
                if n.startswith("*.") and host.endswith(n[1:]) and "." not in host[:-len(n) + 1]:
                    return ctx
                if n == host:
                    return ctx
        return self.ctxs[0][1]

    def route(self, sni, port):
        if not sni:
            return "no_sni", None
        host = sni.lower()
        if not re.fullmatch(r"(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*", host) \
                or len(host) > 253:
            return "bad_host", None
        best = None
        for suffix, pm, allowed in self.domains:
            if host.endswith("." + suffix) and (best is None or len(suffix) > len(best[0])):
                best = (suffix, pm, allowed)
        if best is None:
            return "unknown_domain", None
        suffix, pm, allowed = best
        vid = host[:-len(suffix) - 1]
        if not vid or "." in vid:
            return "unknown_domain", None
        if vid not in self.vms:
            return "unknown_vm", None
        if allowed is not None and port not in allowed:
            return "port_denied", None
        return "ok", (vid, self.vms[vid], pm.get(port, port))

    async def handle(self, reader, writer, port):
        t0 = time.monotonic()
        peer = fmt_addr(writer.get_extra_info("peername"))
        buf = b""
        try:
            while True:
                st, sni = parse_hello(buf)
                if st != "more":
                    break
                d = await asyncio.wait_for(reader.read(16384), self.handshake_timeout)
                if not d:
                    writer.close()
                    return
                buf += d
        except asyncio.TimeoutError:
            writer.close()
            return
        if st != "ok":
            log("WARN", "reject", peer=peer, port=port, sni="-",
                reason={"not_tls": "not_tls", "too_large": "too_large"}.get(st, "bad_hello"))
            writer.close()
            return
        verdict, m = self.route(sni, port)
        if verdict != "ok":
            log("WARN", "reject", peer=peer, port=port, sni=sni or "-", reason=verdict)
            writer.write(ALERT_MISSING_EXTENSION if verdict == "no_sni"
                         else ALERT_UNRECOGNIZED_NAME)
            try:
                await writer.drain()
            except OSError:
                pass
            writer.close()
            return
        vid, addr, vm_port = m
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = self.ctx_for(sni.lower()).wrap_bio(inc, out, server_side=True)
        inc.write(buf)

        async def flush():
            d = out.read()
            if d:
                writer.write(d)
                await writer.drain()

        try:
            async def hs():
                while True:
                    try:
                        obj.do_handshake()
                        await flush()
                        return
                    except ssl.SSLWantReadError:
                        await flush()
                        d = await reader.read(16384)
                        if not d:
                            raise ConnectionError("eof in handshake")
                        inc.write(d)
            await asyncio.wait_for(hs(), self.handshake_timeout)
        except (ssl.SSLError, ConnectionError, OSError, asyncio.TimeoutError) as e:
            try:
                await flush()
            except OSError:
                pass
            log("INFO", "handshake_error", peer=peer, sni=sni, error=str(e))
            writer.close()
            return
        try:
            br, bw = await asyncio.wait_for(asyncio.open_connection(addr, vm_port),
                                            self.connect_timeout)
        except (OSError, asyncio.TimeoutError) as e:
            en = getattr(e, "errno", None) or errno.ETIMEDOUT
            kv = dict(peer=peer, vm=vid, addr="[%s]:%d" % (addr, vm_port), errno=en,
                      error=os.strerror(en))
            if en == errno.ECONNREFUSED:
                kv["hint"] = ("nothing accepts on the VM port; the VM must listen on '::' "
                              "(IPv6), not only 0.0.0.0")
            log("WARN", "connect_error", **kv)
            try:
                obj.unwrap()
            except ssl.SSLError:
                pass
            try:
                await flush()
            except OSError:
                pass
            writer.close()
            return
        up = down = 0

        async def c2v():
            nonlocal up
            while True:
                try:
                    d = obj.read(65536)
                    if not d:
                        break
                    up += len(d)
                    bw.write(d)
                    await bw.drain()
                    await flush()
                except ssl.SSLWantReadError:
                    await flush()
                    d = await reader.read(65536)
                    if not d:
                        break
                    inc.write(d)
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    break
            if bw.can_write_eof():
                bw.write_eof()

        async def v2c():
            nonlocal down
            while True:
                d = await br.read(65536)
                if not d:
                    break
                down += len(d)
                obj.write(d)
                await flush()
            try:
                obj.unwrap()
            except ssl.SSLError:
                pass
            await flush()
            writer.write_eof()

        reason = "done"
        try:
            await asyncio.wait_for(asyncio.gather(c2v(), v2c()), self.idle_timeout)
        except asyncio.TimeoutError:
            reason = "idle"
        except (OSError, ssl.SSLError) as e:
            reason = "error"
            log("DEBUG", "relay_error", peer=peer, error=str(e))
        bw.close()
        writer.close()
        log("INFO", "close", peer=peer, sni=sni, vm=vid, vm_port=vm_port, up=up, down=down,
            ms=int((time.monotonic() - t0) * 1000), reason=reason)


async def amain(cfg):
    g = Gate(cfg)
    addr = cfg.get("listen", {}).get("address", "::")
    servers = []
    for p in cfg["listen"]["ports"]:
        srv = await asyncio.start_server(lambda r, w, p=p: g.handle(r, w, p), host=None
                                         if addr == "::" else addr, port=p,
                                         reuse_address=True, backlog=4096)
        servers.append(srv)
    log("INFO", "ready", ports=",".join(str(p) for p in cfg["listen"]["ports"]), mock=1)
    await asyncio.Future()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-c", required=True)
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    with open(a.c) as f:
        cfg = yaml.safe_load(f)
    if a.check:
        return 0
    global MAX_LEVEL
    MAX_LEVEL = LEVELS[str(cfg.get("log_level", "info")).upper().replace("WARNING", "WARN")]
    import signal
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    try:
        asyncio.run(amain(cfg))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
