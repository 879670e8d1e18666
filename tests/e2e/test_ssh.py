"""4. SSH through port 443 exactly as a user runs it: ssh with an
`openssl s_client` ProxyCommand, SNI = the VM's name, gate port 443 mapped to
VM port 22. The VM's name resolves through a private /etc/hosts bind-mounted
in a private mount namespace (the real /etc/hosts is never touched)."""

import hashlib
import os
import shlex
import subprocess

import pytest

from conftest import SSH_HOSTNAME

PROXY = "openssl s_client -connect %h:443 -servername %h -quiet"


@pytest.fixture(scope="module")
def hosts_file(workdir):
    p = os.path.join(workdir, "hosts")
    with open(p, "w") as f:
        f.write("127.0.0.1 localhost\n::1 localhost\n"
                "127.0.0.1 vm1.vm.test\n::1 vm1.vm.test\n")
    return p


def with_hosts(hosts_file, argv):
    inner = "mount --bind %s /etc/hosts && exec %s" % (
        shlex.quote(hosts_file), " ".join(shlex.quote(a) for a in argv))
    return ["unshare", "--mount", "sh", "-c", inner]


def ssh_opts(fleet):
    return ["-F", "/dev/null", "-i", fleet.ssh.client_key, "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "ConnectTimeout=10", "-o", "ProxyCommand=" + PROXY]


def run(argv, timeout):
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


@pytest.mark.timeout(40)
def test_ssh_over_443(live_gate, fleet, hosts_file):
    mark = live_gate.mark()  # other tests' ssh sessions closed before it
    r = run(with_hosts(hosts_file, ["ssh"] + ssh_opts(fleet) +
                       ["root@vm1.vm.test", "echo hello-from-vm; hostname"]), 30)
    assert r.returncode == 0 and r.stdout == "hello-from-vm\n%s\n" % SSH_HOSTNAME, (
        "ssh through vmgate failed", r, live_gate.tail(), fleet.proc_log("vm1", 22)[-2000:])
    live_gate.wait_log(r"INFO close .*sni=vm1\.vm\.test .*vm=vm1 vm_port=22 ", timeout=5,
                       since=mark)


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_scp_5mib_roundtrip(live_gate, fleet, hosts_file, tmp_path):
    data = os.urandom(5 << 20)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    want = hashlib.sha256(data).hexdigest()
    remote = os.path.join(fleet.workdir, "scp-remote-%d.bin" % os.getpid())
    r = run(with_hosts(hosts_file, ["scp"] + ssh_opts(fleet) +
                       [str(src), "root@vm1.vm.test:" + remote]), 45)
    assert r.returncode == 0, ("scp upload failed", r, live_gate.tail())
    # the VM computes the digest of what it received
    r = run(with_hosts(hosts_file, ["ssh"] + ssh_opts(fleet) +
                       ["root@vm1.vm.test", "sha256sum " + remote]), 30)
    assert r.returncode == 0 and r.stdout.split()[0] == want, (r, live_gate.tail())
    back = tmp_path / "back.bin"
    r = run(with_hosts(hosts_file, ["scp"] + ssh_opts(fleet) +
                       ["root@vm1.vm.test:" + remote, str(back)]), 45)
    assert r.returncode == 0, ("scp download failed", r, live_gate.tail())
    assert hashlib.sha256(back.read_bytes()).hexdigest() == want
    os.unlink(remote)
