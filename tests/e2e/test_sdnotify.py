"""systemd's notification protocol (the Debian package's Type=notify unit
with WatchdogSec): a private vmgate run with NOTIFY_SOCKET and WATCHDOG_USEC
set says READY=1 once it serves, pings WATCHDOG=1, brackets a SIGHUP reload
with RELOADING=1 and READY=1, and says STOPPING=1 on SIGTERM."""

import contextlib
import os
import signal
import socket
import time

import pytest

from e2e_net import free_ports
from e2e_util import Gate, gate_config


@contextlib.contextmanager
def notify_socket(workdir, name, monkeypatch):
    """A datagram socket at workdir/<name>-<pid>.sock that NOTIFY_SOCKET
    names for the vmgate runs started inside; closed and removed after."""
    path = os.path.join(workdir, "%s-%d.sock" % (name, os.getpid()))
    if os.path.exists(path):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(path)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        yield sock
    finally:
        sock.close()
        if os.path.exists(path):
            os.unlink(path)


def next_msg(sock, want, timeout):
    """The notifications up to and including the first that equals or
    starts with want."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            m = sock.recv(4096).decode()
        except socket.timeout:
            break
        seen.append(m)
        if m.startswith(want):
            return seen
    raise AssertionError("no %r notification within %ss, got %r" % (want, timeout, seen))


@pytest.mark.timeout(40)
def test_notify_ready_watchdog_reload_stopping(gate_bin, certs, fleet, workdir,
                                               monkeypatch):
    ports = free_ports(2)
    cfg = os.path.join(workdir, "sdnotify.yaml")
    with open(cfg, "w") as f:
        f.write(gate_config(certs, [("vm1", fleet.addr("vm1"))], ports=ports,
                            port_map="{ %d: 3000, %d: 8080 }" % tuple(ports),
                            allowed_ports="[%d, %d]" % tuple(ports),
                            extra_limits={"drain_timeout_ms": 1000}))
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")  # ping every 0.5 s
    with notify_socket(workdir, "notify", monkeypatch) as sock:
        g = Gate(gate_bin, cfg, os.path.join(workdir, "sdnotify.log"), ports=ports,
                 wait_port=ports[0])
        g.start()
        try:
            seen = next_msg(sock, "READY=1", 10)
            assert seen[-1] == "READY=1\nSTATUS=serving", seen
            assert g.find(r" INFO ready "), "READY=1 came before the ready line"
            t0 = time.monotonic()
            next_msg(sock, "WATCHDOG=1", 3)
            next_msg(sock, "WATCHDOG=1", 3)
            assert time.monotonic() - t0 < 2.5
            os.kill(g.proc.pid, signal.SIGHUP)
            next_msg(sock, "RELOADING=1", 5)
            next_msg(sock, "READY=1", 5)
            g.wait_log(r" INFO reload ", timeout=5)
            os.kill(g.proc.pid, signal.SIGTERM)
            next_msg(sock, "STOPPING=1", 5)
            assert g.proc.wait(10) == 0, g.tail()
        finally:
            g.stop()


@pytest.mark.timeout(60)
def test_edit_right_after_ready_is_seen(gate_bin, certs, fleet, workdir,
                                        monkeypatch):
    """READY=1 promises a served, watched appliance.yaml: an edit renamed
    in the instant READY=1 arrives reloads. (The file watch used to start
    after READY=1 and after the admin socket answered, so an edit made in
    between was lost: a flaky CI failure of test_invalid_edit_ignored.)
    Several fresh processes, each edited at once."""
    ports = free_ports(1)
    cfg = os.path.join(workdir, "edit-after-ready.yaml")

    def write(vms):
        tmp = cfg + ".tmp"
        with open(tmp, "w") as f:
            f.write(gate_config(certs, vms, ports=ports, workers=1,
                                port_map="{}",
                                allowed_ports="[%d]" % ports[0]))
        os.rename(tmp, cfg)

    vms = [("vm1", fleet.addr("vm1"))]
    with notify_socket(workdir, "notify-edit", monkeypatch) as sock:
        for round_ in range(8):
            write(vms)
            g = Gate(gate_bin, cfg, os.path.join(workdir, "edit-%d.log" % round_),
                     ports=ports, wait_port=ports[0])
            g.spawn()
            try:
                next_msg(sock, "READY=1", 10)
                write(vms + [("late%d" % round_, fleet.addr("vm1"))])
                g.wait_log(r" INFO reload trigger=file .*vms=2\b", timeout=5)
            finally:
                g.stop()
