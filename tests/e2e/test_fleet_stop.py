"""Fleet mode: a stopping vmgate does not wait on etcd.

On SIGTERM, once drained, vmgate cancels every etcd call it has running
(control_stopping -> fleet_cancel -> etcd_cancel: libcurl's progress
callback aborts the transfer within about a second), so neither the admin
API's writer thread nor the fleet thread holds up shutdown for
fleet.etcd.timeout_ms. One etcd member of the module's own (test_fleet's
EtcdCluster), SIGSTOPped by test_fleet_admin_async's Stopped / Pending,
and appliances with fleet.etcd.timeout_ms: 30000, so a wait on etcd that
was not cut short would take 30 s:

- a PUT running on the writer and a GET /fleet queued behind it, etcd
  stopped: SIGTERM ends vmgate with status 0 within 8 s; both clients get
  503, Retry-After: 1, Connection: close and {"error": "cancelled: vmgate
  is stopping"}; the log names the cancelled write; nothing was written;
- an appliance starting against a stopped etcd (no snapshot: its fleet
  thread is in its first read): SIGTERM ends it with status 0 within 8 s,
  and the log says the read was cancelled, not that etcd is down.
"""

import json
import os
import signal
import threading
import time

import pytest

from e2e_util import wait_until
from test_fleet import EtcdCluster, FleetGate, UnixHTTP
from test_fleet_admin_async import Pending, Stopped, metric

# Fleet mode is control plane (etcd, the fleet and admin threads): what it
# checks is the same in every socket mode and key path, so the runs of
# the suite after `make e2e` leave it out (E2E_AGAIN: -m 'not once').
pytestmark = pytest.mark.once

TIMEOUT_MS = 30000
EXIT_S = 8  # far under TIMEOUT_MS: the drain (no connections) and a cancel
CANCELLED = "cancelled: vmgate is stopping"


@pytest.fixture(scope="module")
def etcd1(tmp_path_factory):
    with EtcdCluster(str(tmp_path_factory.mktemp("etcd-stop")), n=1) as c:
        yield c


def request(g, method, path, body=None, timeout=20):
    """status, headers, JSON body; ("closed", None, None) when vmgate
    closed the connection without an answer."""
    c = UnixHTTP(g.unix, timeout)
    try:
        c.request(method, path, body=json.dumps(body) if body is not None else None,
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        return r.status, dict(r.getheaders()), json.loads(r.read())
    except (ConnectionError, OSError) as e:
        if isinstance(e, TimeoutError):
            raise
        return "closed", None, None
    finally:
        c.close()


def sigterm_and_wait(g):
    """SIGTERM; seconds until vmgate exited (asserted within EXIT_S)."""
    t0 = time.monotonic()
    os.kill(g.proc.pid, signal.SIGTERM)
    wait_until(lambda: g.proc.poll() is not None, EXIT_S, step=0.02,
               what="vmgate exited after SIGTERM")
    return time.monotonic() - t0


def assert_cancelled_answer(what, result):
    st, hdrs, j = result
    assert st == 503, (what, st, j)
    assert j == {"error": CANCELLED}, (what, j)
    assert hdrs.get("Retry-After") == "1", (what, hdrs)
    assert hdrs.get("Connection") == "close", (what, hdrs)


def test_sigterm_cuts_writes_waiting_on_etcd_short(etcd1, gate_bin, certs, fleet,
                                                   vm1, tmp_path):
    g = FleetGate(gate_bin, str(tmp_path / "gate"), certs, etcd1, "edge-stop1",
                  timeout_ms=TIMEOUT_MS)
    g.start()
    try:
        wait_until(lambda: g.fleet_status()["watch"] == "watching", 10,
                   what="watching")
        queued = {}

        def get_fleet():
            queued["result"] = request(g, "GET", "/fleet")

        with Pending(etcd1, g, "the PUT",
                     lambda: request(g, "PUT", "/vms/cut1", {"address": vm1})) as p:
            t = threading.Thread(target=get_fleet)
            t.start()
            try:
                wait_until(lambda: metric(g, "vmgate_admin_fleet_writes_queued") == 1,
                           5, step=0.02, what="GET /fleet queued")
                took = sigterm_and_wait(g)
            finally:
                t.join(30)
        assert not t.is_alive(), "GET /fleet never answered"
        assert g.proc.returncode == 0, (g.proc.returncode, g.tail())
        print("vmgate exited %.2f s after SIGTERM with a PUT and a GET /fleet "
              "waiting on a stopped etcd (timeout_ms %d)" % (took, TIMEOUT_MS))
        # The PUT ran and was cut short; GET /fleet never ran.
        assert_cancelled_answer("PUT", p.result)
        assert_cancelled_answer("GET /fleet", queued["result"])
        assert p.seconds < EXIT_S, p.seconds
        assert g.find(r'admin_write_cancelled method=PUT vm=cut1 error="%s"'
                      % CANCELLED), g.tail()
        assert g.find(r"fleet_stop etcd calls %s" % CANCELLED), g.tail()
        assert not g.find(r"vm_put vm=cut1 ")
        assert "cut1" not in etcd1.vms()
    finally:
        g.stop()


def test_sigterm_during_first_read_from_a_stopped_etcd(etcd1, gate_bin, certs, tmp_path):
    g = FleetGate(gate_bin, str(tmp_path / "gate"), certs, etcd1, "edge-stop2",
                  timeout_ms=TIMEOUT_MS)
    assert not os.path.exists(g.snapshot)
    with Stopped(etcd1):
        # Serving at once (the data port and the admin API are up) while
        # the fleet thread waits on etcd for its first read.
        g.start()
        try:
            h = wait_until(lambda: g.api("GET", "/health", timeout=5)[1], 2,
                           what="/health")
            # "reading" only once etcd answered a page: still "starting"
            assert h["fleet"]["watch"] == "starting" and h["fleet"]["revision"] == 0, h
            assert h["fleet"]["etcd_up"] is False, h
            took = sigterm_and_wait(g)
        finally:
            g.stop()
    assert g.proc.returncode == 0, (g.proc.returncode, g.tail())
    print("vmgate exited %.2f s after SIGTERM in its first read from a stopped "
          "etcd (timeout_ms %d)" % (took, TIMEOUT_MS))
    assert g.find(r'fleet_read error="%s"' % CANCELLED), g.tail()
    # Cancelled is not "etcd down".
    assert not g.find(r"fleet_down "), g.tail()
