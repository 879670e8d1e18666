#!/usr/bin/python3
"""A WebSocket client for make demo: sends each line read from stdin as a
text message and prints what comes back, with curl's --resolve and
--cacert, so no DNS or system trust is needed.

    demo/wsclient.py --cacert CA --resolve HOST:PORT:ADDR wss://HOST:PORT/
"""

import argparse
import asyncio
import ssl
import sys
import urllib.parse

import websockets


async def main(args):
    url = urllib.parse.urlsplit(args.url)
    host, port = url.hostname, url.port or 443
    addr = host
    if args.resolve:
        rhost, rport, raddr = args.resolve.split(":", 2)
        if rhost == host and int(rport) == port:
            addr = raddr.strip("[]")
    ctx = ssl.create_default_context(cafile=args.cacert)
    async with websockets.connect(args.url, ssl=ctx, host=addr, port=port,
                                  server_hostname=host) as ws:
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                break
            await ws.send(line.rstrip("\n"))
            print(await ws.recv(), flush=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cacert")
    p.add_argument("--resolve", help="HOST:PORT:ADDR, as curl's")
    p.add_argument("url")
    asyncio.run(main(p.parse_args()))
