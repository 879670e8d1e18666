"""A VM socket whose set-up fails in the kernel (a socket it cannot make:
the system's file table full, memory short, a security module's refusal),
forced with VMGATE_TEST_VM_SETUP_FAILS (tests only: the socket's option is
asked as one TCP does not have). The client is answered at once as for
any VM that cannot be reached (vm_errors: http: a 502 naming the cause),
the close is logged as a connect_error, and the connection's slot, its
client socket and the VM's open count are freed. With direct descriptors
the failed set-up used to take the connect's completions with it (a
request that skips its completion on success takes its link's when it
fails): the connection waited for them for ever, holding all of that,
and the handshake timeout closed it as handshake_timeout without an
answer."""

import os

from e2e_net import free_ports
from e2e_util import Gate, curl, gate_metric, peer_re, wait_until


def test_vm_setup_failure_answered_and_freed(gate_bin, certs, fleet,
                                             workdir):
    port, = free_ports(1)
    cfg = os.path.join(workdir, "setup-error.yaml")
    with open(cfg, "w") as f:
        f.write("\n".join([
            "workers: 1",
            "log_level: debug",
            "listen:",
            '  address: "::"',
            "  ports: [%d]" % port,
            "tls:",
            "  certificates:",
            "    - { cert: %s, key: %s }" % (certs.vm_cert, certs.vm_key),
            "  alpn: [http/1.1]",
            "domains:",
            "  - suffix: vm.test",
            "    port_map: { %d: 8080 }" % port,
            "    vm_errors: http",
            "vms:",
            '  - { id: vm1, address: "%s" }' % fleet.addr("vm1"),
            "limits:",
            "  handshake_timeout_ms: 5000",
            "admin:",
            "  unix: %s" % os.path.join(workdir, "setup-error.sock"),
            "",
        ]))
    g = Gate(gate_bin, cfg, os.path.join(workdir, "setup-error.log"),
             ports=[port], wait_port=port)
    g.env = {"VMGATE_TEST_VM_SETUP_FAILS": "1"}
    g.start()
    try:
        for _ in range(3):
            mark = g.mark()
            r = curl(["-sS", "--cacert", certs.ca, "--resolve",
                      "vm1.vm.test:%d:127.0.0.1" % port, "-w",
                      "\\n%{http_code} %{local_port}", "-o", "-",
                      "https://vm1.vm.test:%d/" % port], timeout=20)
            out = r.stdout.decode(errors="replace")
            body, _, tail = out.rpartition("\n")
            code, lport = tail.split()
            assert r.returncode == 0 and code == "502", (out, g.tail(since=mark))
            assert "port 8080 of VM vm1" in body, body
            g.wait_log(r"WARN connect_error .*%s" % peer_re(int(lport)),
                       since=mark)
            assert not g.find(r"handshake_timeout", since=mark)
        # Nothing held: no connection open, none counted for the VM.
        assert wait_until(lambda: gate_metric(
            g, "vmgate_connections_open") == 0, 5,
            what="no connection open")
    finally:
        g.stop()
