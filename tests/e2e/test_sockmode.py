"""The socket mode chosen at startup from what the kernel offers.

The default build keeps connection sockets as io_uring direct descriptors
when the kernel has what that needs (the socket setsockopt command, Linux
6.7), and plain fds otherwise. Debian 12's 6.1 once got neither: ready,
handshakes, then every connection ended in handshake_timeout.
VMGATE_PROBE_KERNEL=6.1 (for tests) makes the startup probe report no more
than 6.1 has, so this runs the 6.1 case on any newer kernel: the startup
line says mode=fds and why, the sockets really are fds (each connection
holds two), and requests, bulk bytes and a half-close go through to a VM.
"""
import hashlib
import os
import subprocess

from e2e_net import free_ports
from e2e_util import BioClient, echo_roundtrip, gate_config, tls_connect

FDS_REASON = ("kernel lacks the io_uring socket setsockopt command "
              "(SOCKET_URING_OP_SETSOCKOPT, Linux 6.7)")


def start(private_gate, name, kernel):
    """A gate on two free ports: g.port["echo"] -> 8080 (echo) on vm1,
    g.port["sink"] -> 3000 (sha sink) on vm2."""
    echo, sink = free_ports(2)
    g = private_gate(name, [echo, sink],
                     wrap=["env", "VMGATE_PROBE_KERNEL=%s" % kernel],
                     vms=("vm1", "vm2"),
                     port_map="{ %d: 8080, %d: 3000 }" % (echo, sink),
                     allowed_ports="[%d, %d]" % (echo, sink))
    g.port = {"echo": echo, "sink": sink}
    return g


def version(gate_bin):
    """`vmgate --version`, the probe not capped."""
    env = dict(os.environ)
    env.pop("VMGATE_PROBE_KERNEL", None)
    out = subprocess.run(gate_bin + ["--version"], capture_output=True, text=True,
                         check=True, env=env).stdout
    assert "this kernel: sockets mode=" in out, out
    return out


def kernel_has_direct(gate_bin):
    """What the real kernel gives this build, the probe not capped."""
    return "this kernel: sockets mode=direct" in version(gate_bin)


def fds_reason(gate_bin):
    """Why a gate capped at 6.1 is on fds: the kernel, or a build without
    direct descriptors (FLAVOUR=fds, `sockets: fds;` in --version)."""
    if "sockets: fds;" in version(gate_bin):
        return "built with Kconfig DIRECT_DESCRIPTORS=n"
    return FDS_REASON


def sink_through(g, certs, host="vm2.vm.test"):
    """777,777 bytes to vm2's sha sink, then a TCP FIN from the client: the
    gate half-closes the VM side and the sink answers with the digest."""
    data = os.urandom(777_777)
    c = BioClient(certs.client_ctx(), host, g.port["sink"])
    c.handshake()
    c.send(data)
    c.shutdown_tcp_write()
    got, end = c.read(limit=100)
    c.close()
    want = (hashlib.sha256(data).hexdigest() + "\n").encode()
    assert got == want, ("after the client's FIN expected the sink's digest, got %r "
                         "(end=%s)" % (got, end), g.tail())


def hold(g, certs, n):
    """|n| TLS connections through to vm1's echo, each proven connected to
    the VM by a round trip. The caller closes them."""
    socks = []
    for i in range(n):
        s = tls_connect(certs.client_ctx(), "vm1.vm.test", g.port["echo"])
        s.sendall(b"ping %d" % i)
        assert s.recv(100) == b"ping %d" % i, g.tail()
        socks.append(s)
    return socks


def socket_fds(g):
    """(client, vm): the gate's established TCP sockets that are fds of its
    process (`ss -p` names the owner of an fd; a direct descriptor has
    none), from clients on g.port["echo"] and to VM port 8080."""
    out = subprocess.run(["ss", "-Htnp", "state", "established"], capture_output=True,
                         text=True, check=True).stdout
    client = vm = 0
    for line in out.splitlines():
        f = line.split()
        if "pid=%d," % g.proc.pid not in line or len(f) < 4:
            continue
        client += f[2].endswith(":%d" % g.port["echo"])
        vm += f[3].endswith(":8080")
    return client, vm


def test_kernel_6_1_runs_on_fds(private_gate, certs, fleet, gate_bin):
    reason = fds_reason(gate_bin)
    g = start(private_gate, "sockmode61", "6.1")
    line = g.wait_log(r"INFO sockets ", timeout=5)[0]
    assert ('mode=fds half_close=shutdown probe_kernel=6.1 reason="%s"' % reason
            in line), line
    # Plain fds: a client socket and a VM socket per connection.
    socks = hold(g, certs, 20)
    assert socket_fds(g) == (20, 20), ("20 connections on plain fds: 20 client "
                                       "and 20 VM sockets as fds", socket_fds(g))
    for s in socks:
        s.close()
    # Full TLS requests through to a VM, more than one per worker, and a
    # client half-close (shutdown(2) on the VM socket).
    for _ in range(4):
        assert echo_roundtrip(certs, port=g.port["echo"], size=100_000) < 3
    sink_through(g, certs)
    assert not g.find(r"connect_error|handshake_timeout|worker_error"), g.tail()


def test_kernel_6_7_half_close_through_the_ring(private_gate, certs, fleet, gate_bin):
    """6.7 has the socket commands but not IORING_OP_FIXED_FD_INSTALL (6.8):
    direct descriptors, and a half-close is an IORING_OP_SHUTDOWN. (On a
    kernel older than 6.7 the cap adds nothing: fds.)"""
    direct = kernel_has_direct(gate_bin)
    g = start(private_gate, "sockmode67", "6.7")
    line = g.wait_log(r"INFO sockets ", timeout=5)[0]
    if direct:
        assert "mode=direct half_close=io_uring_shutdown probe_kernel=6.7" in line, line
    else:
        assert "mode=fds half_close=shutdown probe_kernel=6.7" in line, line
    socks = hold(g, certs, 20)
    want = (0, 0) if direct else (20, 20)
    assert socket_fds(g) == want, ("20 connections: client and VM sockets held as "
                                   "fds", socket_fds(g), "want", want)
    for s in socks:
        s.close()
    for _ in range(3):
        sink_through(g, certs)
    assert echo_roundtrip(certs, port=g.port["echo"]) < 3
    assert not g.find(r"connect_error|handshake_timeout|worker_error"), g.tail()


def test_kernel_6_0_refuses_to_start(gate_bin, certs, fleet, workdir):
    """The default build asks for IORING_SETUP_DEFER_TASKRUN (6.1): on 6.0
    it says so and exits, instead of running without it."""
    port = free_ports(1)[0]
    cfg = os.path.join(workdir, "sockmode60.yaml")
    with open(cfg, "w") as f:
        f.write(gate_config(certs, [("vm1", fleet.addr("vm1"))], ports=[port],
                            port_map="{ %d: 8080 }" % port,
                            allowed_ports="[%d]" % port))
    env = dict(os.environ, VMGATE_PROBE_KERNEL="6.0")
    r = subprocess.run(gate_bin + ["-c", cfg], capture_output=True,
                       text=True, timeout=10, env=env)
    assert r.returncode == 1, (r.returncode, r.stderr[-2000:])
    assert ("ERROR startup cannot run on this kernel: kernel lacks "
            "IORING_SETUP_DEFER_TASKRUN (Linux 6.1)" in r.stderr), r.stderr[-2000:]
    assert "INFO ready" not in r.stderr
