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
import time

from e2e_util import BioClient, echo_roundtrip, tls_connect

PORT_ECHO = 22060  # -> 8080 (echo) on vm1
PORT_SINK = 22061  # -> 3000 (sha sink) on vm2

FDS_REASON = ("kernel lacks the io_uring socket setsockopt command "
              "(SOCKET_URING_OP_SETSOCKOPT, Linux 6.7)")


def start(private_gate, name, kernel):
    return private_gate(name, [PORT_ECHO, PORT_SINK],
                        wrap=["env", "VMGATE_PROBE_KERNEL=%s" % kernel],
                        vms=("vm1", "vm2"),
                        port_map="{ %d: 8080, %d: 3000 }" % (PORT_ECHO, PORT_SINK),
                        allowed_ports="[%d, %d]" % (PORT_ECHO, PORT_SINK))


def kernel_has_direct(gate_bin):
    """What the real kernel gives this build, the probe not capped."""
    env = dict(os.environ)
    env.pop("VMGATE_PROBE_KERNEL", None)
    out = subprocess.run(gate_bin + ["--version"], capture_output=True, text=True,
                         check=True, env=env).stdout
    assert "this kernel: sockets mode=" in out, out
    return "this kernel: sockets mode=direct" in out


def sink_through(g, certs, host="vm2.vm.test"):
    """777,777 bytes to vm2's sha sink, then a TCP FIN from the client: the
    gate half-closes the VM side and the sink answers with the digest."""
    data = os.urandom(777_777)
    c = BioClient(certs.client_ctx(), host, PORT_SINK)
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
        s = tls_connect(certs.client_ctx(), "vm1.vm.test", PORT_ECHO)
        s.sendall(b"ping %d" % i)
        assert s.recv(100) == b"ping %d" % i, g.tail()
        socks.append(s)
    return socks


def wait_fds(g, cond, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        n = g.fd_count()
        if cond(n) or time.monotonic() > deadline:
            return n
        time.sleep(0.05)


def test_kernel_6_1_runs_on_fds(private_gate, certs, fleet):
    g = start(private_gate, "sockmode61", "6.1")
    line = g.wait_log(r"INFO sockets ", timeout=5)[0]
    assert ('mode=fds half_close=shutdown probe_kernel=6.1 reason="%s"' % FDS_REASON
            in line), line
    # Plain fds: a client socket and a VM socket per connection.
    base = g.fd_count()
    socks = hold(g, certs, 20)
    held = wait_fds(g, lambda n: n >= base + 40)
    assert held >= base + 40, ("20 connections should hold 40 fds on plain fds",
                               base, held)
    for s in socks:
        s.close()
    assert wait_fds(g, lambda n: n <= base) <= base, g.tail()
    # Full TLS requests through to a VM, more than one per worker, and a
    # client half-close (shutdown(2) on the VM socket).
    for _ in range(4):
        assert echo_roundtrip(certs, port=PORT_ECHO, size=100_000) < 3
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
    if direct:
        base = g.fd_count()
        socks = hold(g, certs, 20)
        assert g.fd_count() <= base + 2, ("direct descriptors cost fds", base,
                                          g.fd_count())
        for s in socks:
            s.close()
    for _ in range(3):
        sink_through(g, certs)
    assert echo_roundtrip(certs, port=PORT_ECHO) < 3
    assert not g.find(r"connect_error|handshake_timeout|worker_error"), g.tail()


def test_kernel_6_0_refuses_to_start(gate_bin, gate_config_path, workdir):
    """The default build asks for IORING_SETUP_DEFER_TASKRUN (6.1): on 6.0
    it says so and exits, instead of running without it."""
    env = dict(os.environ, VMGATE_PROBE_KERNEL="6.0")
    r = subprocess.run(gate_bin + ["-c", gate_config_path], capture_output=True,
                       text=True, timeout=10, env=env)
    assert r.returncode == 1, (r.returncode, r.stderr[-2000:])
    assert ("ERROR startup cannot run on this kernel: kernel lacks "
            "IORING_SETUP_DEFER_TASKRUN (Linux 6.1)" in r.stderr), r.stderr[-2000:]
    assert "INFO ready" not in r.stderr
