"""Boots the appliance image (make image, $VMGATE_IMAGE) under qemu.

Guests run under software emulation (TCG) unless QEMU_ACCEL=kvm. They use
qemu's user networking: hostfwd ports on 127.0.0.1 picked by binding port
0; the guest reaches the host's [::1] as [fec0::2], where the tests run the
"VM" services (an HTTP server, sshd). Each boot is bounded, its serial
console goes to a file the tests poll, and qemu is killed by its own PID.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))

from e2e_util import Certs  # noqa: E402

IMAGE = os.environ.get("VMGATE_IMAGE", os.path.join(REPO, "build", "image"))
OVMF = "/usr/share/ovmf/OVMF.fd"
TOKEN = "image-test-token"
BIG = 8 << 20


def free_port(family=socket.AF_INET, host="127.0.0.1"):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_tcp(host, port, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("nothing listens on [%s]:%d after %ss" % (host, port, timeout))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    body = b""

    def do_GET(self):
        data = self.body if self.path == "/big" else b"hello from the host\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


class HTTP6(ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True


class Host:
    """What the guest reaches on [fec0::2]: an HTTP server and sshd."""

    def __init__(self, d):
        self.dir = d
        self.certs = Certs(os.path.join(d, "certs"))
        Handler.body = os.urandom(BIG)
        self.http = HTTP6(("::1", 0), Handler)
        self.http_port = self.http.server_address[1]
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        self.sshd = None
        self.ssh_port = free_port(socket.AF_INET6, "::1")
        self.ssh_key = os.path.join(d, "id_ed25519")
        host_key = os.path.join(d, "ssh_host_ed25519_key")
        for k in (host_key, self.ssh_key):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", k],
                           check=True, capture_output=True)
        shutil.copyfile(self.ssh_key + ".pub", os.path.join(d, "authorized_keys"))
        conf = os.path.join(d, "sshd_config")
        with open(conf, "w") as f:
            f.write("\n".join([
                "Port %d" % self.ssh_port, "ListenAddress ::1",
                "HostKey " + host_key, "PermitRootLogin prohibit-password",
                "AuthorizedKeysFile " + os.path.join(d, "authorized_keys"),
                "PasswordAuthentication no", "KbdInteractiveAuthentication no",
                "UsePAM no", "StrictModes no",
                "PidFile " + os.path.join(d, "sshd.pid"), ""]))
        os.makedirs("/run/sshd", exist_ok=True)
        self.sshd_log = open(os.path.join(d, "sshd.log"), "wb")
        self.sshd = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", conf],
                                     stdout=self.sshd_log, stderr=subprocess.STDOUT)
        wait_tcp("::1", self.ssh_port, 10)

    def config(self, path):
        """appliance.yaml, its certificate, key and admin token, in path's folder."""
        d = os.path.dirname(path)
        shutil.copyfile(self.certs.vm_cert, os.path.join(d, "cert.pem"))
        shutil.copyfile(self.certs.vm_key, os.path.join(d, "key.pem"))
        with open(os.path.join(d, "admin.token"), "w") as f:
            f.write(TOKEN + "\n")
        with open(path, "w") as f:
            f.write("""log_level: info
listen:
  address: "::"
  ports: [443, 8443]
tls:
  certificates:
    - { cert: cert.pem, key: key.pem }
domains:
  - suffix: vm.test
    port_map: { 443: %d, 8443: %d }
vms:
  - { id: vm1, address: "fec0::2" }
limits:
  drain_timeout_ms: 20000
admin:
  listen: "[::]:9901"
  token_file: admin.token
  state_file: /data/vmgate-state.json
""" % (self.ssh_port, self.http_port))

    def stop(self):
        self.http.shutdown()
        if self.sshd and self.sshd.poll() is None:
            os.kill(self.sshd.pid, signal.SIGTERM)
            self.sshd.wait(5)


class Guest:
    """One qemu boot. disks: [(path, readonly)], virtio, in that order."""

    def __init__(self, d, name, disks, uefi=False, extra_append=""):
        self.log = os.path.join(d, name + ".console.log")
        self.monitor = os.path.join(d, name + ".monitor")
        self.ports = {p: free_port() for p in (443, 8443, 9901)}
        fwd = ",".join("hostfwd=tcp:127.0.0.1:%d-:%d" % (h, g)
                       for g, h in self.ports.items())
        accel = "kvm" if os.environ.get("QEMU_ACCEL") == "kvm" else "tcg"
        argv = ["qemu-system-x86_64", "-accel", accel, "-m", "768", "-smp", "2",
                "-nographic", "-no-reboot", "-serial", "file:" + self.log,
                "-qmp", "unix:%s,server=on,wait=off" % self.monitor,
                "-netdev", "user,id=n0," + fwd,
                "-device", "virtio-net-pci,netdev=n0",
                "-device", "virtio-rng-pci"]
        if uefi:
            argv += ["-bios", OVMF]
        else:
            argv += ["-kernel", os.path.join(IMAGE, "vmlinuz"),
                     "-initrd", os.path.join(IMAGE, "initramfs.img"),
                     "-append", ("console=ttyS0 " + extra_append).strip()]
        for path, ro in disks:
            argv += ["-drive", "file=%s,format=raw,if=virtio%s" % (
                path, ",readonly=on" if ro else "")]
        self.started = time.monotonic()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=open(self.log + ".qemu", "wb"))

    def console(self):
        try:
            with open(self.log, "rb") as f:
                return f.read().decode("utf-8", "replace").replace("\r", "")
        except FileNotFoundError:
            return ""

    def tail(self, n=40):
        try:
            with open(self.log + ".qemu", errors="replace") as f:
                qemu = f.read()
        except FileNotFoundError:
            qemu = ""
        return "\n".join(self.console().splitlines()[-n:]) + "\n" + qemu

    def wait_console(self, pattern, timeout):
        rx = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = rx.search(self.console())
            if m:
                return m
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError("console never showed %r (qemu %s):\n%s" % (
            pattern, self.proc.poll(), self.tail()))

    def wait_ready(self, timeout=120):
        self.wait_console(r"INFO ready ", timeout)
        return time.monotonic() - self.started

    def press_power_button(self):
        """QMP system_powerdown: the ACPI power button event."""
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(10)
        s.connect(self.monitor)
        f = s.makefile("rwb")

        def reply():
            while True:
                msg = json.loads(f.readline())
                if "return" in msg or "error" in msg:
                    return msg

        json.loads(f.readline())  # greeting
        for cmd in ("qmp_capabilities", "system_powerdown"):
            f.write(json.dumps({"execute": cmd}).encode() + b"\n")
            f.flush()
            r = reply()
            assert "return" in r, (cmd, r)
        s.close()

    def kill(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture(scope="session")
def workdir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("vmgate-image"))


@pytest.fixture(scope="session")
def host(workdir):
    for f in ("vmlinuz", "initramfs.img", "vmgate.efi", "vmgate-disk.img"):
        assert os.path.exists(os.path.join(IMAGE, f)), "run make image first: no %s" % f
    h = Host(os.path.join(workdir, "host"))
    yield h
    h.stop()


@pytest.fixture(scope="session")
def config_disk(workdir, host):
    d = os.path.join(workdir, "config")
    os.makedirs(d)
    host.config(os.path.join(d, "appliance.yaml"))
    out = os.path.join(workdir, "config.img")
    r = subprocess.run(["make", "-s", "--no-print-directory", "-C", REPO, "config-disk",
                        "CONFIG=" + os.path.join(d, "appliance.yaml"), "OUT=" + out],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r
    return out


@pytest.fixture
def guests():
    """Guests a test boots; whatever is still running at its end is killed."""
    started = []
    yield started
    for g in started:
        g.kill()
