"""A second, private vmgate on other ports: log_level filtering, `ready`,
and a clean exit on SIGTERM with connections open (after the drain)."""

import os
import signal
import ssl
import subprocess
import time

import pytest

from e2e_net import free_ports
from e2e_util import (Gate, gate_config, listeners_on, recv_all, tls_connect,
                      wait_until)

@pytest.mark.timeout(40)
def test_log_level_warn_and_sigterm(gate_bin, certs, fleet, workdir):
    http, echo = ports = free_ports(2)
    cfg = os.path.join(workdir, "lifecycle.yaml")
    with open(cfg, "w") as f:
        f.write(gate_config(certs, [("vm1", fleet.addr("vm1"))], log_level="warn",
                            ports=ports, port_map="{ %d: 3000, %d: 8080 }" % (http, echo),
                            allowed_ports="[%d, %d]" % (http, echo),
                            extra_limits={"drain_timeout_ms": 1500}))
    g = Gate(gate_bin, cfg, os.path.join(workdir, "lifecycle.log"), ports=ports,
             wait_port=http)
    g.start()
    try:
        # a relayed connection (INFO close: must not be printed at warn) ...
        s = tls_connect(certs.client_ctx(), "vm1.vm.test", http)
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        got = recv_all(s, timeout=5)
        s.close()
        assert got.endswith(b"ok vm1\n"), (got, g.tail())
        # ... and a rejected one (WARN reject: printed)
        with pytest.raises(Exception):
            tls_connect(certs.client_ctx(), "nope.vm.test", http).close()
        g.wait_log(r" WARN reject .*reason=unknown_vm", timeout=5)
        # an open connection at SIGTERM time gets drain_timeout_ms to
        # finish, keeps working meanwhile, and then cannot keep vmgate alive
        held = tls_connect(certs.client_ctx(), "vm1.vm.test", echo)
        held.settimeout(5)
        # relayed both ways: its accept and connect lines are written
        held.sendall(b"relayed")
        assert held.recv(64) == b"relayed", g.tail()
        assert not g.find(r" (INFO|DEBUG) "), (
            "log_level: warn printed INFO/DEBUG lines", g.tail())
        t0 = time.monotonic()
        os.kill(g.proc.pid, signal.SIGTERM)
        # draining: the listeners go first (log_level warn prints no
        # shutdown line to wait for)
        assert wait_until(lambda: not listeners_on(ports), 5), (
            "listeners still open after SIGTERM", g.tail())
        held.sendall(b"still here")
        assert held.recv(64) == b"still here", g.tail()
        try:
            rc = g.proc.wait(6)
        except subprocess.TimeoutExpired:
            raise AssertionError("vmgate still running 6 s after SIGTERM "
                                 "(drain_timeout_ms 1500)\n" + g.tail())
        assert time.monotonic() - t0 >= 1.4, ("exited before the drain "
                                              "timeout", g.tail())
        assert g.find(r" WARN shutdown drain_timeout closing=1"), g.tail()
        held.close()
        assert rc == 0, ("vmgate exit status %s after SIGTERM" % rc, g.tail())
    finally:
        g.stop()


@pytest.mark.slow
@pytest.mark.timeout(40)
def test_idle_timeout(gate_bin, certs, fleet, workdir):
    """idle_timeout_ms closes a silent relayed connection, and only that one:
    a connection that keeps talking stays open past the deadline."""
    ports = free_ports(2)
    cfg = os.path.join(workdir, "idle.yaml")
    with open(cfg, "w") as f:
        f.write(gate_config(certs, [("vm1", fleet.addr("vm1"))], ports=ports,
                            port_map="{ %d: 8080, %d: 8080 }" % tuple(ports),
                            allowed_ports="[%d, %d]" % tuple(ports),
                            extra_limits={"idle_timeout_ms": 1500}))
    g = Gate(gate_bin, cfg, os.path.join(workdir, "idle.log"), ports=ports, wait_port=ports[0])
    g.start()
    try:
        mark = g.mark()
        quiet = tls_connect(certs.client_ctx(), "vm1.vm.test", ports[0])
        busy = tls_connect(certs.client_ctx(), "vm1.vm.test", ports[1])
        quiet.settimeout(8)
        busy.settimeout(5)
        for s in (quiet, busy):
            s.sendall(b"x")
            assert s.recv(10) == b"x"
        qport = quiet.getsockname()[1]
        t0 = time.monotonic()
        quiet_closed_at = None
        while time.monotonic() - t0 < 4.0:
            busy.sendall(b"tick")
            got = recv_all(busy, limit=4)
            assert len(got) >= 4, "an active connection was closed by the idle timer\n" + g.tail()
            time.sleep(0.4)
        try:
            d = quiet.recv(10)
            assert d == b"", d
            quiet_closed_at = time.monotonic() - t0
        except (OSError, ssl.SSLError):  # an alert or a reset also closes it
            quiet_closed_at = time.monotonic() - t0
        assert quiet_closed_at is not None and quiet_closed_at <= 6.0, g.tail()
        g.wait_log(r"close peer=\S*:%d .*reason=\S*idle" % qport, timeout=5, since=mark)
        quiet.close()
        busy.close()
    finally:
        g.stop()


def test_idle_timeout_after_the_last_byte(gate_bin, certs, fleet, workdir):
    """A connection closes idle_timeout_ms (to 1.25 times that) after its
    last byte, whatever connections came after it to the same worker (one
    here). The idle timer used to
    re-arm an active connection from its last byte behind connections
    armed later, so it closed when they did (here ~5.4 s after its last
    byte instead of ~3-3.75)."""
    port, = free_ports(1)
    cfg = os.path.join(workdir, "idle2.yaml")
    with open(cfg, "w") as f:
        f.write(gate_config(certs, [("vm1", fleet.addr("vm1"))], ports=[port],
                            port_map="{ %d: 8080 }" % port,
                            allowed_ports="[%d]" % port, workers=1,
                            extra_limits={"idle_timeout_ms": 3000}))
    g = Gate(gate_bin, cfg, os.path.join(workdir, "idle2.log"), ports=[port],
             wait_port=port)
    g.start()
    try:
        a = tls_connect(certs.client_ctx(), "vm1.vm.test", port)
        a.settimeout(15)
        t0 = time.monotonic()
        # A talks once, early; B comes later and stays silent.
        time.sleep(0.5)
        a.sendall(b"x")
        assert a.recv(10) == b"x"
        last = time.monotonic()
        time.sleep(max(0, 2.9 - (time.monotonic() - t0)))
        b = tls_connect(certs.client_ctx(), "vm1.vm.test", port)
        try:
            d = a.recv(10)
            assert d == b"", d
        except (OSError, ssl.SSLError):  # an alert or a reset closes too
            pass
        idle = time.monotonic() - last
        assert 2.9 <= idle <= 4.75, "closed %.2f s after its last byte" % idle
        a.close()
        b.close()
    finally:
        g.stop()


def test_sigterm_with_many_workers(gate_bin, certs, fleet, workdir):
    """SIGTERM wakes every worker through the control loop's ring, whose
    16 entries one wake-up per worker used to fill: with 16 workers or
    more the next read was prepared on no entry and vmgate crashed
    instead of draining (the default on a 16-CPU machine)."""
    port, = free_ports(1)
    cfg = os.path.join(workdir, "workers20.yaml")
    with open(cfg, "w") as f:
        f.write(gate_config(certs, [("vm1", fleet.addr("vm1"))], ports=[port],
                            port_map="{ %d: 8080 }" % port,
                            allowed_ports="[%d]" % port, workers=20))
    g = Gate(gate_bin, cfg, os.path.join(workdir, "workers20.log"),
             ports=[port], wait_port=port)
    g.start()
    s = tls_connect(certs.client_ctx(), "vm1.vm.test", port)
    s.sendall(b"x")
    assert s.recv(10) == b"x"
    s.close()
    mark = g.mark()
    rc = g.stop()
    assert rc == 0, (rc, g.tail(since=mark))
    assert g.find(r"INFO shutdown drained", since=mark), g.tail(since=mark)
