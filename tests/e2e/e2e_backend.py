#!/usr/bin/python3
"""Plain-TCP services a simulated VM runs (started inside its namespace).

    e2e_backend.py MODE --port P [--bind ::] [--name VMNAME] [--record FILE]

MODE:
  http      HTTP/1.1 (http.server): GET /health -> "ok NAME\\n";
            PUT/POST any path -> hex SHA-256 of the body + "\\n"
  echo      echoes every byte back; closes after the client's EOF
  shasink   reads until EOF, replies hex SHA-256 of what it read + "\\n",
            then closes
  shasource reads one line "SIZE SEED\\n", sends SIZE bytes of
            stream(SEED) (see stream_chunks), then closes
  greeter   sends "HELLO-FROM-VM\\n", shuts down its write side, reads until
            EOF and appends "SHA256HEX LEN\\n" of what it read to --record
  ws        WebSocket echo (websockets, asyncio), text and binary, 4 MiB max

Prints "READY MODE PORT" on stdout once listening.
"""

import argparse
import asyncio
import hashlib
import http.server
import random
import socket
import socketserver
import sys

HELLO = b"HELLO-FROM-VM\n"


def stream_chunks(seed, size, chunk=1 << 20):
    """The deterministic pseudo-random byte stream both ends agree on."""
    r = random.Random(seed)
    left = size
    while left > 0:
        n = min(chunk, left)
        yield r.randbytes(n)
        left -= n


def stream_sha256(seed, size):
    h = hashlib.sha256()
    for c in stream_chunks(seed, size):
        h.update(c)
    return h.hexdigest()


def ready(mode, port):
    print("READY %s %d" % (mode, port), flush=True)


def family_of(bind):
    return socket.AF_INET6 if ":" in bind else socket.AF_INET


# ---------------------------------------------------------------- http

def run_http(args):
    name = args.name

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *a):
            sys.stdout.write("http: " + (fmt % a) + "\n")
            sys.stdout.flush()

        def _reply(self, code, body):
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path == "/health":
                self._reply(200, ("ok %s\n" % name).encode())
            else:
                self._reply(404, b"not found\n")

        def _upload(self):
            h = hashlib.sha256()
            n = 0
            te = self.headers.get("Transfer-Encoding", "")
            if "chunked" in te.lower():
                while True:
                    line = self.rfile.readline()
                    size = int(line.split(b";")[0].strip(), 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        break
                    data = self.rfile.read(size)
                    h.update(data)
                    n += len(data)
                    self.rfile.readline()
            else:
                left = int(self.headers.get("Content-Length", "0"))
                while left > 0:
                    data = self.rfile.read(min(left, 1 << 20))
                    if not data:
                        break
                    h.update(data)
                    n += len(data)
                    left -= len(data)
            self._reply(200, ("%s %d\n" % (h.hexdigest(), n)).encode())

        do_PUT = _upload
        do_POST = _upload

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        address_family = family_of(args.bind)
        daemon_threads = True
        allow_reuse_address = True
        request_queue_size = 128

    srv = Server((args.bind, args.port), Handler)
    ready("http", args.port)
    srv.serve_forever()


# ---------------------------------------------------------------- asyncio modes

async def h_echo(reader, writer, args):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def h_shasink(reader, writer, args):
    h = hashlib.sha256()
    n = 0
    try:
        while True:
            data = await reader.read(1 << 18)
            if not data:
                break
            h.update(data)
            n += len(data)
        writer.write((h.hexdigest() + "\n").encode())
        await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def h_shasource(reader, writer, args):
    try:
        line = await reader.readline()
        size, seed = line.split()
        for c in stream_chunks(int(seed), int(size)):
            writer.write(c)
            await writer.drain()
    except (ConnectionError, OSError, ValueError):
        pass
    finally:
        writer.close()


async def h_greeter(reader, writer, args):
    h = hashlib.sha256()
    n = 0
    try:
        writer.write(HELLO)
        await writer.drain()
        writer.write_eof()
        while True:
            data = await reader.read(1 << 18)
            if not data:
                break
            h.update(data)
            n += len(data)
        with open(args.record, "a") as f:
            f.write("%s %d\n" % (h.hexdigest(), n))
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


HANDLERS = {"echo": h_echo, "shasink": h_shasink, "shasource": h_shasource,
            "greeter": h_greeter}


async def serve_stream(args):
    handler = HANDLERS[args.mode]
    srv = await asyncio.start_server(lambda r, w: handler(r, w, args),
                                     host=args.bind, port=args.port,
                                     family=family_of(args.bind),
                                     reuse_address=True, backlog=2048)
    ready(args.mode, args.port)
    async with srv:
        await srv.serve_forever()


async def serve_ws(args):
    import websockets

    async def echo(ws, path=None):
        try:
            async for msg in ws:
                await ws.send(msg)
        except websockets.ConnectionClosed:
            pass

    async with websockets.serve(echo, args.bind, args.port, max_size=4 << 20,
                                family=family_of(args.bind)):
        ready("ws", args.port)
        await asyncio.Future()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["http", "ws"] + sorted(HANDLERS))
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--bind", default="::")
    ap.add_argument("--name", default="vm")
    ap.add_argument("--record", default="/dev/null")
    args = ap.parse_args()
    if args.mode == "http":
        run_http(args)
    elif args.mode == "ws":
        asyncio.run(serve_ws(args))
    else:
        asyncio.run(serve_stream(args))


if __name__ == "__main__":
    main()
