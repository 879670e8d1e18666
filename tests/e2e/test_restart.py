"""A restart right after a crash serves (e2e_admin.AdminGate: data ports
21080/21300, admin on [::]:21901 and a unix socket, a state file).

After SIGKILL the kernel tears the dead process's io_uring down a moment
after the process is reaped, and until then the accepts it held keep its
listening sockets in LISTEN. A supervisor restarts at once, inside that
window: the new vmgate must wait for the ports rather than exit, and must
route by the admin changes acknowledged before the kill."""

import threading
import time

import pytest

from e2e_admin import ECHO_PORT, echo_once, host, http_health
from e2e_util import listeners_on, tls_connect

ROUNDS = 20
SERVE_WITHIN = 2.0  # s from the restart to new connections served
ADMIN_WITHIN = 6.0  # s; vmgate waits up to 5 s for a port (LISTEN_WAIT_MS)


class Load:
    """A client thread opening TLS connections to vm1's echo service
    through the gate, one after another, until stopped (at most |limit|
    connections or |seconds|). Failures are expected while the gate is
    down; only the counts matter."""

    def __init__(self, certs, limit=100000, seconds=150):
        self.ctx = certs.client_ctx()
        self.limit = limit
        self.deadline = time.monotonic() + seconds
        self.stop = threading.Event()
        self.ok = 0
        self.failed = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while (not self.stop.is_set() and self.ok + self.failed < self.limit
               and time.monotonic() < self.deadline):
            try:
                s = tls_connect(self.ctx, host("vm1"), ECHO_PORT, timeout=1)
                try:
                    s.sendall(b"x")
                    ok = s.recv(1) == b"x"
                finally:
                    s.close()
            except OSError:
                ok = False
            if ok:
                self.ok += 1
            else:
                self.failed += 1
                # the gate is down: do not spin on refused connects
                self.stop.wait(0.005)


def poll(fn, deadline, proc):
    """fn() until it is true or |deadline| passes; stops early when |proc|
    has exited. Returns the last value."""
    while True:
        try:
            v = fn()
        except OSError:
            v = None
        if v or time.monotonic() > deadline or proc.poll() is not None:
            return v
        time.sleep(0.02)


def admin_ok(g):
    return g.api("GET", "/health", token=None, timeout=1)[0] == 200


@pytest.mark.timeout(240)
def test_restart_after_sigkill_serves(admin_gate, fleet, certs):
    """20 rounds under a load of new connections: an admin PUT of a new VM
    id, acknowledged; SIGKILL; the same command line started again within
    milliseconds of the reaping. Every restart serves new connections
    within 2 s, routes the VM put before the kill, and its admin API comes
    up (the process does not exit)."""
    g = admin_gate
    load = Load(certs)
    load.thread.start()
    failures = []
    gaps = []
    try:
        for i in range(ROUNDS):
            vid = "restart%d" % i
            st, h, body = g.api("PUT", "/vms/" + vid,
                                {"address": fleet.addr("vm1")})
            assert st == 201, (i, st, body)
            # kill while connections are being opened: at least one more
            # served since the acknowledgement
            seen = load.ok
            assert poll(lambda: load.ok > seen, time.monotonic() + 5,
                        g.proc), (i, g.tail())
            mark = g.mark()
            g.kill(wait_gone=False)
            t0 = time.monotonic()
            g.spawn()
            gaps.append(time.monotonic() - t0)
            deadline = t0 + SERVE_WITHIN
            served = poll(lambda: echo_once(certs, "vm1", timeout=1) == b"ping\n",
                          deadline, g.proc)
            routed = served and poll(
                lambda: http_health(certs, vid, timeout=1) == "ok vm1\n",
                deadline, g.proc)
            admin = poll(lambda: admin_ok(g), t0 + ADMIN_WITHIN, g.proc)
            if not (served and routed and admin and g.alive()):
                failures.append("round %d: served=%s routed=%s admin=%s "
                                "alive=%s\n%s" % (i, bool(served), bool(routed),
                                                  bool(admin), g.alive(),
                                                  g.tail(15, since=mark)))
                # bring a gate back for the next round
                if g.alive():
                    g.stop()
                gone = time.monotonic() + 10
                while listeners_on(g.ports) and time.monotonic() < gone:
                    time.sleep(0.05)
                g.start()
    finally:
        load.stop.set()
        load.thread.join(10)
    print("restart gaps (ms): max %.1f; load: %d served, %d failed"
          % (1000 * max(gaps or [0]), load.ok, load.failed))
    assert not failures, "%d of %d rounds failed:\n%s" % (
        len(failures), ROUNDS, "\n".join(failures))
    # every change acknowledged before a kill is still there
    st, h, body = g.api("GET", "/vms")
    listed = {v["id"] for v in body["vms"]}
    assert {"restart%d" % i for i in range(ROUNDS)} <= listed, listed
