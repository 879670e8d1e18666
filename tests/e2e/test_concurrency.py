"""6. 1,000 concurrent TLS connections over 4 VMs, all open at once, each
with a unique message echoed back."""

import asyncio
import time

import pytest

from conftest import UUID_VM

N = 1000
VMS = ["vm1", "vm2", "vm3", UUID_VM]


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_1000_concurrent(live_gate, certs):
    ctx = certs.client_ctx()
    fds_before = live_gate.held()
    errors = []
    opened = []

    async def one(i, sem, conns):
        vm = VMS[i % len(VMS)]
        msg = ("conn %d to %s " % (i, vm)).encode() * 3 + b"\n"
        async with sem:
            try:
                r, w = await asyncio.wait_for(asyncio.open_connection(
                    "127.0.0.1", 8080, ssl=ctx, server_hostname="%s.vm.test" % vm), 30)
                w.write(msg)
                await w.drain()
                got = await asyncio.wait_for(r.readexactly(len(msg)), 30)
                if got != msg:
                    errors.append((i, "echo mismatch", got[:60]))
                conns.append((r, w))
            except Exception as e:  # collected and reported below
                errors.append((i, type(e).__name__, str(e)[:120]))

    async def go():
        sem = asyncio.Semaphore(200)
        conns = []
        t0 = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*(one(i, sem, conns) for i in range(N))), 60)
        opened.append((len(conns), time.monotonic() - t0))
        # all held at once: check a sample still echoes before closing
        for r, w in conns[::50]:
            w.write(b"still-open\n")
            await w.drain()
            assert await asyncio.wait_for(r.readexactly(11), 10) == b"still-open\n"
        for r, w in conns:
            w.close()
        await asyncio.gather(*(w.wait_closed() for r, w in conns), return_exceptions=True)

    asyncio.run(go())
    assert not errors, ("%d of %d connections failed, first: %r" % (len(errors), N, errors[:5]),
                        live_gate.tail())
    assert opened[0][0] == N, opened
    print("1000 connections open in %.2fs" % opened[0][1])
    # every connection's client and VM sockets are given back
    deadline = time.monotonic() + 10
    while live_gate.held() > fds_before + 4 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert live_gate.held() <= fds_before + 4, (
        "vmgate holds %d fds after all 1000 connections closed (%d before)"
        % (live_gate.held(), fds_before), live_gate.tail())
