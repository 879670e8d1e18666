"""vmgate end-to-end harness.

Session fixtures:
  certs  a private CA and two leaf certificates (ECDSA *.vm.test,
         RSA *.other.test), made with openssl
  fleet  simulated VMs (network namespaces + veth, fd00:X::2) running the
         backends listed in FLEET below, plus an unreachable "ghost"
  gate   build/vmgate (or $VMGATE_BIN) on a generated appliance.yaml,
         listening on [::] ports 443 3000 8080 8443 9000

Every test gets a watchdog (SIGALRM): 60 s unless marked
@pytest.mark.timeout(N). Teardown of namespaces and processes runs at the
end of the session and again from atexit.
"""

import os
import shlex
import signal
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from e2e_net import Fleet, wait_tcp  # noqa: E402
from e2e_util import REPO, Certs, Gate, gate_config  # noqa: E402

PY = "/usr/bin/python3"
BACKEND = os.path.join(HERE, "e2e_backend.py")
UUID_VM = "45a68069-defc-4233-9865-6298d87053af"
SSH_HOSTNAME = "vm1-sim"
H2_BODY = b"hello over cleartext http/2 from vm1\n"

# vmId -> [(mode, port, bind)]. Which VM port each test reaches:
#   vm1  22 sshd (via gate 443), 3000 http, 8080 echo, 8443 nghttpd h2c,
#        9000 echo (reachable only through other.test: vm.test denies 9000)
#   vm2  3000 sha sink, 8080 echo, 8443 sha source
#   vm3  3000 websocket echo, 8080 echo, 8443 greeter (VM-side half-close)
#   UUID 8080 echo, 3000 nothing (refused), 8443 echo bound to 0.0.0.0 only
#   ghost  address with no host behind it (connect timeout)
FLEET = {
    "vm1": [("sshd", 22, "::"), ("http", 3000, "::"), ("echo", 8080, "::"),
            ("nghttpd", 8443, "::"), ("echo", 9000, "::")],
    "vm2": [("shasink", 3000, "::"), ("echo", 8080, "::"),
            ("shasource", 8443, "::")],
    "vm3": [("ws", 3000, "::"), ("echo", 8080, "::"), ("greeter", 8443, "::")],
    UUID_VM: [("echo", 8080, "::"), ("echo", 8443, "0.0.0.0")],
}


def _sigterm(signum, frame):
    # turn SIGTERM (e.g. from a CI timeout) into an orderly stop, so the
    # session fixtures' teardown (namespaces, processes) still runs
    raise KeyboardInterrupt("SIGTERM")


def pytest_configure(config):
    signal.signal(signal.SIGTERM, _sigterm)
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
    config.addinivalue_line("markers", "once: long, and the same in every "
                            "socket mode and key path: make test runs it in "
                            "e2e only, not again in e2e-oldkernel or e2e-inproc")
    config.addinivalue_line("markers", "timeout(seconds): per-test watchdog")


# ---------------------------------------------------------------- watchdog

class TestTimeout(Exception):
    pass


@pytest.fixture(autouse=True)
def _watchdog(request):
    m = request.node.get_closest_marker("timeout")
    secs = m.args[0] if m else 60

    def fire(signum, frame):
        raise TestTimeout("test exceeded its %ss watchdog" % secs)

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, secs)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# ---------------------------------------------------------------- session state

@pytest.fixture(scope="session")
def workdir(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("vmgate-e2e"))
    os.chmod(d, 0o755)
    return d


@pytest.fixture(scope="session")
def certs(workdir):
    return Certs(os.path.join(workdir, "certs"))


class SSHKit:
    def __init__(self, d):
        os.makedirs(d, exist_ok=True)
        self.dir = d
        self.host_key = os.path.join(d, "ssh_host_ed25519_key")
        self.client_key = os.path.join(d, "id_ed25519")
        self.authorized = os.path.join(d, "authorized_keys")
        self.config = os.path.join(d, "sshd_config")
        for k in (self.host_key, self.client_key):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                            "vmgate-e2e", "-f", k], check=True, capture_output=True)
        with open(self.client_key + ".pub") as f, open(self.authorized, "w") as o:
            o.write(f.read())
        with open(self.config, "w") as f:
            f.write("\n".join([
                "Port 22",
                "ListenAddress ::",
                "HostKey " + self.host_key,
                "PermitRootLogin prohibit-password",
                "AuthorizedKeysFile " + self.authorized,
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",
                "PidFile " + os.path.join(d, "sshd.pid"),
                "Subsystem sftp internal-sftp",
                "LogLevel VERBOSE",
                "",
            ]))


class FleetInfo:
    """What the tests need to know about the simulated VMs."""

    def __init__(self, fleet, workdir):
        self.fleet = fleet
        self.workdir = workdir
        self.vms = {}          # id -> e2e_net.VM
        self.procs = {}        # (id, port) -> Popen
        self.ssh = None
        self.greeter_record = os.path.join(workdir, "greeter.log")
        self.h2_dir = os.path.join(workdir, "h2docs")

    def addr(self, vid):
        return self.vms[vid].addr

    def proc_log(self, vid, port):
        p = self.procs[(vid, port)]
        with open(p.log_path, errors="replace") as f:
            return f.read()


@pytest.fixture(scope="session")
def fleet(workdir):
    subprocess.run(["mkdir", "-p", "/run/sshd"], check=True)
    f = Fleet()
    info = FleetInfo(f, workdir)
    info.ssh = SSHKit(os.path.join(workdir, "ssh"))
    os.makedirs(info.h2_dir, exist_ok=True)
    with open(os.path.join(info.h2_dir, "hello.txt"), "wb") as o:
        o.write(H2_BODY)
    open(info.greeter_record, "w").close()
    logs = os.path.join(workdir, "backend-logs")
    os.makedirs(logs, exist_ok=True)
    try:
        for vid in FLEET:
            info.vms[vid] = f.add_vm(vid)
        info.vms["ghost"] = f.add_vm("ghost", blackhole=True)
        f.wait_link()
        for vid, services in FLEET.items():
            vm = info.vms[vid]
            for mode, port, bind in services:
                log = os.path.join(logs, "%s-%d-%s.log" % (vid[:8], port, mode))
                if mode == "sshd":
                    argv = ["unshare", "--uts", "sh", "-c",
                            "hostname %s && exec /usr/sbin/sshd -D -e -f %s"
                            % (SSH_HOSTNAME, shlex.quote(info.ssh.config))]
                elif mode == "nghttpd":
                    argv = ["nghttpd", "--no-tls", "-a", bind, "-d", info.h2_dir, str(port)]
                else:
                    argv = [PY, BACKEND, mode, "--port", str(port), "--bind", bind,
                            "--name", vid, "--record", info.greeter_record]
                info.procs[(vid, port)] = vm.spawn(argv, log)
        for vid, services in FLEET.items():
            for mode, port, bind in services:
                p = info.procs[(vid, port)]
                if bind == "::":
                    wait_tcp(info.addr(vid), port, timeout=15, proc=p)
                else:
                    wait_ready(p, timeout=15)
    except BaseException:
        f.teardown()
        raise
    yield info
    f.teardown()


@pytest.fixture
def vm1(fleet):
    """The address of the session's simulated VM vm1 (the fleet tests put
    it into etcd)."""
    return fleet.addr("vm1")


def wait_ready(p, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(p.log_path, errors="replace") as fh:
            if "READY" in fh.read():
                return
        if p.poll() is not None:
            break
        time.sleep(0.05)
    with open(p.log_path, errors="replace") as fh:
        raise RuntimeError("backend %s not ready: %s" % (p.args, fh.read()))


def gate_argv():
    env = os.environ.get("VMGATE_BIN")
    if env:
        return shlex.split(env)
    return [os.path.join(REPO, "build", "vmgate")]


@pytest.fixture(scope="session")
def gate_bin():
    argv = gate_argv()
    if not os.path.exists(argv[0]):
        pytest.fail("vmgate binary %s does not exist (run `make` first)" % argv[0])
    return argv


@pytest.fixture(scope="session")
def gate_config_path(workdir, certs, fleet):
    vms = [(vid, vm.addr) for vid, vm in fleet.vms.items()]
    path = os.path.join(workdir, "appliance.yaml")
    with open(path, "w") as f:
        f.write(gate_config(certs, vms,
                            admin_unix=os.path.join(workdir, "admin.sock")))
    return path


@pytest.fixture(scope="session")
def gate(gate_bin, gate_config_path, workdir):
    g = Gate(gate_bin, gate_config_path, os.path.join(workdir, "vmgate.log"))
    g.start(timeout=10)
    yield g
    rc = g.stop()
    print("\nvmgate stopped rc=%s; log at %s" % (rc, g.log_path))


@pytest.fixture
def live_gate(gate):
    """The gate, checked alive before and after the test."""
    assert gate.alive(), "vmgate is not running\n" + gate.tail()
    yield gate
    assert gate.alive(), "vmgate died during the test\n" + gate.tail()


@pytest.fixture
def admin_gate(gate_bin, certs, fleet, tmp_path):
    """A vmgate of its own with the admin API, fresh for each test (see
    e2e_admin.py); vm1 and vm2 are in its appliance.yaml."""
    from e2e_admin import AdminGate
    g = AdminGate(gate_bin, str(tmp_path / "admin-gate"), certs,
                  [("vm1", fleet.addr("vm1")), ("vm2", fleet.addr("vm2"))])
    g.start()
    yield g
    rc = g.stop()
    print("\nadmin vmgate stopped rc=%s; log at %s" % (rc, g.log_path))


@pytest.fixture
def private_gate(gate_bin, certs, fleet, workdir):
    """Factory for a second vmgate of the test's own: private_gate(name,
    ports, port_map=..., extra_limits=..., vms=[...], wrap=[...], ...)
    writes {name}.yaml, starts it (under |wrap|, e.g. prlimit) and stops it
    after the test. Give it free ports (e2e_net.free_ports)."""
    started = []

    def make(name, ports, vms=("vm1", "vm2"), wrap=(), wait_port=None, **cfg_kw):
        cfg = os.path.join(workdir, "%s.yaml" % name)
        cfg_kw.setdefault("admin_unix",
                          os.path.join(workdir, "%s.admin.sock" % name))
        with open(cfg, "w") as f:
            f.write(gate_config(certs, [(v, fleet.addr(v)) for v in vms],
                                ports=ports, **cfg_kw))
        g = Gate(list(wrap) + gate_bin, cfg, os.path.join(workdir, "%s.log" % name),
                 ports=ports, wait_port=wait_port or ports[0])
        started.append(g)
        g.start(timeout=10)
        return g

    yield make
    for g in started:
        g.stop()
