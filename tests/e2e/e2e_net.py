"""Simulated VMs: one network namespace per VM, joined to the host by a veth.

VM number N gets the namespace ``vgt{pid}v{N}``, a veth whose host side is
``vgt{pid}h{N}`` (at most 15 characters) holding fd00:X::1/64 and whose far
side, inside the namespace, holds fd00:X::2/64 (X is the first free prefix
index, normally N). Both addresses use ``nodad`` so they are usable at once.

Everything made here is recorded and removed by ``Fleet.teardown()``, which
is safe to call more than once and is also registered with atexit. Nothing
else on the host is touched: no sysctl, no /etc, no firewall.
"""

import atexit
import os
import re
import signal
import socket
import subprocess
import time

IP = "/usr/sbin/ip"


def run(cmd, check=True, timeout=20, **kw):
    """Run a short command; on failure raise with its stderr in the text."""
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise RuntimeError("command failed (%d): %s\n%s%s" %
                           (r.returncode, " ".join(cmd), r.stdout, r.stderr))
    return r


def used_fd00_indices():
    """Prefix indices X already routed on the host as fd00:X::/64."""
    out = run([IP, "-6", "route", "show"], check=False).stdout
    used = set()
    for m in re.finditer(r"^fd00:([0-9a-f]{1,4})::/64", out, re.M):
        used.add(int(m.group(1), 16))
    return used


class VM:
    """One simulated VM: a namespace, its addresses and its processes."""

    def __init__(self, fleet, n, idx, name):
        self.fleet = fleet
        self.n = n
        self.idx = idx
        self.name = name  # the vmId in the gate's config
        self.ns = "vgt%dv%d" % (fleet.pid, n)
        self.host_if = "vgt%dh%d" % (fleet.pid, n)
        self.addr = "fd00:%x::2" % idx
        self.host_addr = "fd00:%x::1" % idx
        self.procs = []

    def exec_argv(self, argv):
        return [IP, "netns", "exec", self.ns] + list(argv)

    def run(self, argv, **kw):
        return run(self.exec_argv(argv), **kw)

    def spawn(self, argv, log_path, **kw):
        """Start a long-running process inside the namespace."""
        logf = open(log_path, "ab")
        p = subprocess.Popen(self.exec_argv(argv), stdout=logf, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True, **kw)
        logf.close()
        p.log_path = log_path
        self.procs.append(p)
        self.fleet.procs.append(p)
        return p


class Fleet:
    def __init__(self):
        self.pid = os.getpid()
        self.vms = []
        self.namespaces = []
        self.links = []
        self.procs = []
        self._down = False
        atexit.register(self.teardown)

    def add_vm(self, name, blackhole=False):
        """Create namespace + veth. With blackhole=True the namespace side
        gets no address and the host holds a permanent neighbour entry for
        the VM address with a MAC nobody has: SYNs to it vanish silently
        (a connect timeout) without leaving the host for the real network."""
        n = len(self.vms) + 1
        used = used_fd00_indices() | {vm.idx for vm in self.vms}
        prefer = 0xff if blackhole else n
        idx = prefer if prefer not in used else next(
            i for i in range(1, 0xff) if i not in used)
        vm = VM(self, n, idx, name)
        run([IP, "netns", "add", vm.ns])
        self.namespaces.append(vm.ns)
        run([IP, "link", "add", vm.host_if, "type", "veth", "peer", "name", "eth0",
             "netns", vm.ns])
        self.links.append(vm.host_if)
        run([IP, "addr", "add", vm.host_addr + "/64", "dev", vm.host_if, "nodad"])
        run([IP, "link", "set", vm.host_if, "up"])
        vm.run([IP, "link", "set", "lo", "up"])
        vm.run([IP, "link", "set", "eth0", "up"])
        if blackhole:
            run([IP, "-6", "neigh", "replace", vm.addr, "lladdr", "02:00:5e:00:53:ff",
                 "nud", "permanent", "dev", vm.host_if])
        else:
            vm.run([IP, "addr", "add", vm.addr + "/64", "dev", "eth0", "nodad"])
        self.vms.append(vm)
        return vm

    def wait_link(self, timeout=5.0):
        """Wait until the veth carriers are up (operstate UP)."""
        deadline = time.monotonic() + timeout
        for vm in self.vms:
            while True:
                out = run([IP, "-o", "link", "show", vm.host_if], check=False).stdout
                if "state UP" in out or "LOWER_UP" in out:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("veth %s not up: %s" % (vm.host_if, out))
                time.sleep(0.05)

    def teardown(self):
        if self._down:
            return
        self._down = True
        for p in self.procs:
            stop_process(p)
        for ns in self.namespaces:
            # Anything still alive inside one of *our* namespaces was
            # started by us (directly or as a child of a backend).
            out = run([IP, "netns", "pids", ns], check=False).stdout.split()
            for pid in out:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            run([IP, "netns", "del", ns], check=False)
        for link in self.links:
            r = run([IP, "link", "show", link], check=False)
            if r.returncode == 0:
                run([IP, "link", "del", link], check=False)


def stop_process(p, grace=3.0):
    """SIGTERM the process (and its own process group), then SIGKILL."""
    if p.poll() is not None:
        return p.returncode
    try:
        os.killpg(p.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        return p.wait(grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return p.wait(5)


def free_ports(n):
    """|n| distinct TCP ports free on every address right now (bound to
    port 0 together, then released), for a test's own listeners."""
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket(socket.AF_INET6)
        s.bind(("::", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def wait_tcp(host, port, timeout=10.0, proc=None):
    """Wait until a TCP connect to host:port succeeds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("process exited with %s while waiting for %s:%s" %
                               (proc.returncode, host, port))
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError as e:
            last = e
            time.sleep(0.05)
    raise TimeoutError("nothing accepts on [%s]:%s after %.1fs (%s)" %
                       (host, port, timeout, last))
