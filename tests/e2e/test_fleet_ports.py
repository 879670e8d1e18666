"""Fleet mode: a VM value's "ports" are its port policy, as vms[].ports.

One etcd member (test_fleet's EtcdCluster, free loopback ports) and one
appliance with two listeners: P3000 maps to the VM's port 3000 (vm1's
HTTP server), P8080 to its port 8080 (vm1's echo). A VM put into etcd
with "ports": [3000] is routed on 3000 and refused on 8080 with an
unrecognized_name alert before any ServerHello; a PUT through the admin
API with "ports": [8080] turns that round; the snapshot file keeps the
ports, and an appliance started from it alone (etcd unreachable)
applies them.
"""

import base64
import json
import os
import socket

import pytest

from e2e_util import (Gate, Hello, echo_roundtrip, gate_config,
                      plaintext_alerts, read_answer, tls_connect, wait_until)
from e2e_net import free_ports
from test_fleet import PREFIX, EtcdCluster, FleetGate, b64

# Fleet mode is control plane (etcd, the fleet and admin threads): what it
# checks is the same in every socket mode and key path, so the runs of
# the suite after `make e2e` leave it out (E2E_AGAIN: -m 'not once').
pytestmark = pytest.mark.once

UNRECOGNIZED_NAME = 112


class PortsGate(FleetGate):
    """FleetGate with listeners for the VM ports 3000 and 8080."""

    def __init__(self, argv, d, certs, endpoints, name="edge-ports"):
        os.makedirs(d, exist_ok=True)
        self.dir = d
        self.certs = certs
        self.p3000, self.p8080 = free_ports(2)
        self.port = self.p8080
        self.unix = os.path.join(d, "admin.sock")
        self.snapshot = os.path.join(d, "fleet-snapshot.json")
        text = gate_config(certs, [], ports=[self.p3000, self.p8080],
                           port_map="{ %d: 3000, %d: 8080 }" % (self.p3000, self.p8080),
                           allowed_ports="[%d, %d]" % (self.p3000, self.p8080),
                           admin_unix=self.unix, log_level="info")
        text += "\n".join([
            "fleet:",
            "  etcd:",
            "    endpoints: [%s]" % ", ".join('"%s"' % e for e in endpoints),
            "    prefix: %s" % PREFIX,
            "    timeout_ms: 1000",
            "    progress_interval_ms: 500",
            "  appliance_id: %s" % name,
            "  snapshot_file: %s" % self.snapshot,
        ]) + "\n"
        cfg = os.path.join(d, "appliance.yaml")
        with open(cfg, "w") as f:
            f.write(text)
        Gate.__init__(self, argv, cfg, os.path.join(d, "vmgate.log"),
                      ports=[self.p3000, self.p8080], wait_port=self.p8080)

    def http_3000(self, vid):
        """An HTTP answer from the VM's port 3000 through the appliance."""
        try:
            with tls_connect(self.certs.client_ctx(), "%s.vm.test" % vid,
                             self.p3000, timeout=2) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                return s.recv(64).startswith(b"HTTP/1.")
        except (OSError, ValueError):
            return False

    def echo_8080(self, vid):
        try:
            echo_roundtrip(self.certs, port=self.p8080, host="%s.vm.test" % vid,
                           size=64, timeout=2)
            return True
        except Exception:
            return False

    def refused(self, port, vid):
        """A raw ClientHello's answer is one unrecognized_name alert and
        nothing else: no ServerHello, so no certificate either."""
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        try:
            s.sendall(Hello(sni="%s.vm.test" % vid).records())
            data, _ = read_answer(s, timeout=3)
        finally:
            s.close()
        return (plaintext_alerts(data) == [(2, UNRECOGNIZED_NAME)]
                and data[:1] == b"\x15")


@pytest.fixture(scope="module")
def etcd1(tmp_path_factory):
    with EtcdCluster(str(tmp_path_factory.mktemp("etcd1")), n=1) as c:
        yield c


def test_fleet_vm_ports(etcd1, gate_bin, certs, fleet, tmp_path):
    vm1 = fleet.addr("vm1")
    d = str(tmp_path / "gate")
    g = PortsGate(gate_bin, d, certs, [m.url for m in etcd1.members])
    g.start()
    try:
        wait_until(lambda: g.fleet_status()["watch"] == "watching", 10, what="watching")

        # Put into etcd by someone else: 3000 only.
        etcd1.put("fp", {"address": vm1, "ports": [3000]})
        wait_until(lambda: g.http_3000("fp"), 3, what="fp routed on 3000")
        assert g.refused(g.p8080, "fp")
        g.wait_log(r"WARN reject .* port=%d sni=fp\.vm\.test reason=port_denied "
                   r"detail=\"the VM's ports" % g.p8080)
        assert not g.echo_8080("fp")
        st, j = g.api("GET", "/vms/fp")
        assert st == 200 and j.get("ports") == "3000", (st, j)

        # Through the admin API: now 8080 only, written into etcd's value.
        st, j = g.api("PUT", "/vms/fp", {"address": vm1, "ports": [8080]})
        assert st == 200, (st, j)
        assert j.get("ports") == "8080", j
        assert g.echo_8080("fp")
        assert g.refused(g.p3000, "fp")
        kv = etcd1.call("kv/range", {"key": b64(PREFIX + "vms/fp")})
        value = json.loads(base64.b64decode(kv["kvs"][0]["value"]))
        assert value == {"address": vm1, "ports": [8080]}, value

        # Bad ports: a 400 naming the entry, nothing written.
        st, j = g.api("PUT", "/vms/fp", {"address": vm1, "ports": [8080, "9-1"]})
        assert st == 400 and "entry 1" in j["error"], (st, j)
        assert g.echo_8080("fp")

        # Without ports: every port again.
        st, j = g.api("PUT", "/vms/fq", {"address": vm1, "ports": ["3000-3001", 8080]})
        assert st == 201, (st, j)
        assert j.get("ports") == "3000-3001,8080", j
        assert g.http_3000("fq") and g.echo_8080("fq")

        # The snapshot file keeps the ports.
        wait_until(lambda: os.path.exists(g.snapshot) and '"fq"' in open(g.snapshot).read(), 5,
                   what="snapshot written")
        snap = json.load(open(g.snapshot))["vms"]
        assert snap["fp"] == {"address": vm1, "ports": [8080]}, snap
        assert snap["fq"] == {"address": vm1, "ports": ["3000-3001", 8080]}, snap
    finally:
        g.stop()

    # Started from the snapshot alone (no etcd): the ports still apply.
    g2 = PortsGate(gate_bin, d, certs, ["http://127.0.0.1:%d" % free_ports(1)[0]])
    g2.start()
    try:
        assert g2.find(r"fleet_snapshot file=.* loaded vms=2 ")
        assert g2.echo_8080("fp")
        assert g2.refused(g2.p3000, "fp")
        assert g2.http_3000("fq")
    finally:
        g2.stop()
        etcd1.clean_vms()
