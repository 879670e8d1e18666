"""A second, private vmgate on other ports: log_level filtering, `ready`,
and a clean exit on SIGTERM with connections open."""

import os
import signal
import subprocess
import time

import pytest

from e2e_util import Gate, gate_config, tls_connect

PORTS = [13000, 13443]


@pytest.mark.timeout(40)
def test_log_level_warn_and_sigterm(gate_bin, certs, fleet, workdir):
    cfg = os.path.join(workdir, "lifecycle.yaml")
    with open(cfg, "w") as f:
        f.write(gate_config(certs, [("vm1", fleet.addr("vm1"))], log_level="warn",
                            ports=PORTS, port_map="{ 13000: 3000, 13443: 8080 }",
                            allowed_ports="[13000, 13443]"))
    g = Gate(gate_bin, cfg, os.path.join(workdir, "lifecycle.log"), ports=PORTS,
             wait_port=13000)
    g.start()
    try:
        # a relayed connection (INFO close: must not be printed at warn) ...
        s = tls_connect(certs.client_ctx(), "vm1.vm.test", 13000)
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        s.settimeout(5)
        got = b""
        while True:
            d = s.recv(4096)
            if not d:
                break
            got += d
        s.close()
        assert got.endswith(b"ok vm1\n"), (got, g.tail())
        # ... and a rejected one (WARN reject: printed)
        with pytest.raises(Exception):
            tls_connect(certs.client_ctx(), "nope.vm.test", 13000).close()
        g.wait_log(r" WARN reject .*reason=unknown_vm", timeout=5)
        # an open connection at SIGTERM time must not keep vmgate alive
        held = tls_connect(certs.client_ctx(), "vm1.vm.test", 13443)
        time.sleep(0.3)
        assert not g.find(r" (INFO|DEBUG) "), (
            "log_level: warn printed INFO/DEBUG lines", g.tail())
        os.kill(g.proc.pid, signal.SIGTERM)
        try:
            rc = g.proc.wait(5)
        except subprocess.TimeoutExpired:
            raise AssertionError("vmgate still running 5 s after SIGTERM\n" + g.tail())
        held.close()
        assert rc == 0, ("vmgate exit status %s after SIGTERM" % rc, g.tail())
    finally:
        g.stop()
