"""3. WebSocket (wss://) echo through vmgate: text, binary, 1 MiB."""

import asyncio
import os

import websockets


def test_wss_echo(live_gate, certs):
    ctx = certs.client_ctx(alpn=["http/1.1"])
    big = os.urandom(1 << 20)

    async def go():
        async with websockets.connect("wss://vm3.vm.test:3000/echo", ssl=ctx,
                                      host="127.0.0.1", port=3000,
                                      server_hostname="vm3.vm.test",
                                      max_size=4 << 20, open_timeout=10) as ws:
            for i in range(20):
                msg = "text message %d \u00e9\u4e2d" % i
                await ws.send(msg)
                assert await ws.recv() == msg
                b = os.urandom(i * 100 + 1)
                await ws.send(b)
                assert await ws.recv() == b
            await ws.send(big)
            got = await ws.recv()
            assert got == big, "1 MiB message corrupted (len %d)" % len(got)
            await ws.send("after-big")
            assert await ws.recv() == "after-big"
            pong = await ws.ping()
            await asyncio.wait_for(pong, 5)

    try:
        asyncio.run(asyncio.wait_for(go(), 30))
    except Exception as e:
        raise AssertionError("websocket echo failed: %r\n%s" % (e, live_gate.tail()))
