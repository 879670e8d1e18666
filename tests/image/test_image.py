"""The appliance image booted under qemu on Debian 12's kernel (6.1), with
real traffic through it. The first boot (-kernel/-initrd, a config disk
from make config-disk, a copy of vmgate-disk.img for its VMGATEDATA
partition) serves curl and ssh, takes an admin API change and is powered
off by the power button during an ssh session; the second boot of the same
disks must still route that change; then OVMF boots a fresh copy of
vmgate-disk.img once. The tests run in this order. The image's vmgate is
the default build (Kconfig KEY_SIGNER=y): its private key is in the
vmgate-signer it starts, running as the image's vmgate-signer user, which
signs every full handshake of the first boot."""

import hashlib
import json
import os
import re
import select
import shutil
import subprocess
import time
import urllib.request

import pytest

from conftest import BIG, IMAGE, REPO, Guest, Handler, TOKEN

PROXY = "openssl s_client -connect 127.0.0.1:%d -servername %s -quiet"


@pytest.fixture(scope="module")
def data_disk(workdir):
    p = os.path.join(workdir, "disk-data.img")
    shutil.copyfile(os.path.join(IMAGE, "vmgate-disk.img"), p)
    return p


@pytest.fixture(scope="module")
def first_boot(workdir, host, config_disk, data_disk):
    g = Guest(workdir, "boot1", [(config_disk, True), (data_disk, False)])
    yield g
    g.kill()


def gpt_partition_start(path, name):
    """The byte offset of the GPT partition called |name| in disk image
    |path| (512-byte sectors)."""
    with open(path, "rb") as f:
        f.seek(512)
        hdr = f.read(92)
        assert hdr[:8] == b"EFI PART", path
        lba, n, size = (int.from_bytes(hdr[72:80], "little"),
                        int.from_bytes(hdr[80:84], "little"),
                        int.from_bytes(hdr[84:88], "little"))
        f.seek(lba * 512)
        table = f.read(n * size)
    for i in range(n):
        e = table[i * size:(i + 1) * size]
        if e[56:128].decode("utf-16-le").rstrip("\0") == name:
            return int.from_bytes(e[32:40], "little") * 512
    raise AssertionError("no partition %s in %s" % (name, path))


def curl(guest, name, path, out, timeout=60):
    port = guest.ports[8443]
    return subprocess.run(
        ["curl", "-sS", "--max-time", str(timeout), "--http1.1",
         "--cacert", guest_ca(), "--resolve", "%s:%d:127.0.0.1" % (name, port),
         "-o", out, "-w", "%{http_code}", "https://%s:%d%s" % (name, port, path)],
        capture_output=True, text=True, timeout=timeout + 10)


_CA = []


def guest_ca():
    return _CA[0]


@pytest.fixture(scope="module", autouse=True)
def _ca(host):
    _CA[:] = [host.certs.ca]


def ssh_argv(guest, host, command):
    return ["ssh", "-F", "/dev/null", "-i", host.ssh_key, "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "ConnectTimeout=20",
            "-o", "ProxyCommand=" + PROXY % (guest.ports[443], "vm1.vm.test"),
            "root@vm1.vm.test", command]


def admin(guest, method, path, body=None):
    req = urllib.request.Request(
        "http://127.0.0.1:%d%s" % (guest.ports[9901], path), method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": "Bearer " + TOKEN})
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_boots_on_debian_kernel_with_fds(first_boot):
    took = first_boot.wait_ready()
    con = first_boot.console()
    assert "Linux version 6.1." in con, first_boot.tail()
    # the default build chose plain fds at run time on 6.1
    assert "INFO sockets mode=fds " in con, first_boot.tail()
    assert "config: /dev/vda mounted read-only at /config" in con
    assert "data: formatting blank /dev/vdb3 (first boot)" in con, first_boot.tail()
    assert "data: /dev/vdb3 checked (e2fsck exit 0)" in con, first_boot.tail()
    assert "data: /dev/vdb3 mounted at /data" in con
    # a host name of its own (qemu's first NIC: 52:54:00:12:34:56), and
    # the DHCP server's name server in /etc/resolv.conf
    assert "vmgate-image: hostname vmgate-123456" in con, first_boot.tail()
    assert "network: eth0 DNS 10.0.2.3" in con, first_boot.tail()
    # the key is in vmgate-signer, as the image's own user (uid 100 in its
    # /etc/passwd), not root
    assert re.search(r"^vmgate-signer INFO startup uid=100 gid=100 "
                     r"user=vmgate-signer capabilities=none ", con, re.M), \
        first_boot.tail()
    assert re.search(r"INFO signer pid=\d+ socket=/tmp/vmgate-signer\.\w+/"
                     r"signer\.sock keys=1$", con, re.M), first_boot.tail()
    print("boot to ready: %.1f s" % took)


def test_curl_https_big_body_byte_exact(first_boot, workdir):
    first_boot.wait_ready()
    out = os.path.join(workdir, "big.out")
    r = curl(first_boot, "vm1.vm.test", "/big", out)
    assert r.returncode == 0 and r.stdout == "200", (r, first_boot.tail())
    with open(out, "rb") as f:
        got = f.read()
    assert len(got) == BIG
    assert hashlib.sha256(got).digest() == hashlib.sha256(Handler.body).digest()


def test_ssh_through_443(first_boot, host):
    first_boot.wait_ready()
    r = subprocess.run(ssh_argv(first_boot, host, "echo hello-through-the-appliance"),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout == "hello-through-the-appliance\n", (
        r, first_boot.tail())
    first_boot.wait_console(r"INFO close .*sni=vm1\.vm\.test .*vm=vm1 ", 10)


def test_admin_put_then_power_button_during_ssh(first_boot, host):
    first_boot.wait_ready()
    st, body = admin(first_boot, "PUT", "/vms/vm2", {"address": "fec0::2"})
    assert st == 201, (st, body, first_boot.tail())
    p = subprocess.Popen(ssh_argv(first_boot, host,
                                  "echo session-started; sleep 4; echo session-finished"),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 40
        line = b""
        while not line.endswith(b"\n") and time.monotonic() < deadline:
            if select.select([p.stdout], [], [], 0.5)[0]:
                c = p.stdout.read1(64) if hasattr(p.stdout, "read1") else p.stdout.read(1)
                if not c:
                    break
                line += c
        assert line == b"session-started\n", (line, first_boot.tail())
        first_boot.press_power_button()
        out, err = p.communicate(timeout=40)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0 and out == b"session-finished\n", (p.returncode, out, err,
                                                                first_boot.tail())
    rc = first_boot.proc.wait(60)
    con = first_boot.console()
    assert "power button: powering off" in con, first_boot.tail()
    assert "INFO shutdown signal=SIGTERM closing=remaining" in con or \
        "INFO shutdown signal=TERM closing=remaining" in con, first_boot.tail()
    assert "INFO shutdown drained" in con, first_boot.tail()
    assert "shutdown: vmgate stopped after" in con
    assert rc == 0, (rc, first_boot.tail())
    # curl's and both ssh sessions' full handshakes were signed by the
    # signer, which vmgate stopped on its way out
    m = re.search(r"^vmgate-signer INFO shutdown signs=(\d+) errors=0 "
                  r"thread_signs=[\d,]+$", con, re.M)
    assert m and int(m.group(1)) >= 3, first_boot.tail()
    assert "WARN signer" not in con and "ERROR signer" not in con, \
        first_boot.tail()


def test_admin_change_survives_reboot(workdir, host, config_disk, data_disk, first_boot,
                                      guests):
    assert first_boot.proc.poll() == 0, \
        "the first boot must have been powered off by the test before this one"
    # this boot's network is static, from the kernel command line (qemu's
    # hostfwd goes to 10.0.2.15)
    g = Guest(workdir, "boot2", [(config_disk, True), (data_disk, False)],
              extra_append="vmgate.ip=10.0.2.15/24 vmgate.ip6=fec0::15/64 "
                           "vmgate.gw=10.0.2.2,fec0::2 vmgate.dns=fec0::3")
    guests.append(g)
    g.wait_ready()
    con = g.console()
    assert "formatting" not in con and "data: /dev/vdb3 mounted at /data" in con, g.tail()
    assert re.search(r"data: /dev/vdb3 checked \(e2fsck exit [01]\)", con), g.tail()
    # ext4 with a journal (busybox's mke2fs made ext2: no journal, and
    # nothing checked it after a power cut)
    with open(data_disk, "rb") as f:
        f.seek(gpt_partition_start(data_disk, "VMGATEDATA") + 1024 + 0x5C)
        compat = int.from_bytes(f.read(4), "little")
    assert compat & 0x4, "no journal (s_feature_compat %#x)" % compat
    assert "network: static from the kernel command line on eth0" in con, g.tail()
    assert "network: eth0 10.0.2.15/24 fec0::15/64" in con, g.tail()
    assert "network: DNS fec0::3" in con, g.tail()
    assert "DHCP" not in con
    st, body = admin(g, "GET", "/vms/vm2")
    assert st == 200 and body.get("address") == "fec0::2", (st, body, g.tail())
    out = os.path.join(workdir, "vm2.out")
    r = curl(g, "vm2.vm.test", "/small", out)
    assert r.returncode == 0 and r.stdout == "200", (r, g.tail())
    with open(out, "rb") as f:
        assert f.read() == b"hello from the host\n"


def test_uefi_disk_image_boots(workdir, host, guests):
    # its config disk also carries a network file (static addresses)
    d = os.path.join(workdir, "config-uefi")
    os.makedirs(d)
    host.config(os.path.join(d, "appliance.yaml"))
    with open(os.path.join(d, "network"), "w") as f:
        f.write("# qemu's user network, static\ninterface eth0\n"
                "address 10.0.2.15/24\naddress fec0::15/64  # site-local\n"
                "gateway 10.0.2.2\ngateway fec0::2\n")
    cfg = os.path.join(workdir, "config-uefi.img")
    r = subprocess.run(["make", "-s", "--no-print-directory", "-C", REPO, "config-disk",
                        "CONFIG=" + os.path.join(d, "appliance.yaml"), "OUT=" + cfg,
                        "NETWORK=" + os.path.join(d, "network")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r
    disk = os.path.join(workdir, "disk-uefi.img")
    shutil.copyfile(os.path.join(IMAGE, "vmgate-disk.img"), disk)
    # the disk image's own VMGATECFG holds no appliance.yaml: the config
    # disk after it is the one mounted
    g = Guest(workdir, "uefi", [(disk, False), (cfg, True)], uefi=True)
    guests.append(g)
    g.wait_ready(timeout=180)
    con = g.console()
    assert "config: /dev/vda2 is VMGATECFG but holds no appliance.yaml, skipped" in con
    assert "config: /dev/vdb mounted read-only at /config" in con
    assert "data: formatting blank /dev/vda3 (first boot)" in con, g.tail()
    assert "EFI stub" in con or "efi:" in con, g.tail()
    assert "network: static from /config/network on eth0" in con, g.tail()
    assert "network: eth0 10.0.2.15/24 fec0::15/64" in con, g.tail()
    out = os.path.join(workdir, "uefi.out")
    r = curl(g, "vm1.vm.test", "/small", out)
    assert r.returncode == 0 and r.stdout == "200", (r, g.tail())


def test_bad_config_errors_on_console_and_retried(workdir, guests):
    d = os.path.join(workdir, "badconfig")
    os.makedirs(d)
    with open(os.path.join(d, "appliance.yaml"), "w") as f:
        f.write("listen:\n  ports: [443]\n  adress: \"::\"\n")
    img = os.path.join(workdir, "bad-config.img")
    r = subprocess.run(["make", "-s", "--no-print-directory", "-C", REPO, "config-disk",
                        "CONFIG=" + os.path.join(d, "appliance.yaml"), "OUT=" + img],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r
    # and a disk whose VMGATEDATA partition holds somebody's data (no ext
    # file system): never formatted over
    disk = os.path.join(workdir, "disk-notblank.img")
    shutil.copyfile(os.path.join(IMAGE, "vmgate-disk.img"), disk)
    start = gpt_partition_start(disk, "VMGATEDATA")
    mark = b"XFSB somebody's file system" + os.urandom(64)
    with open(disk, "r+b") as f:
        f.seek(start)
        f.write(mark)
    g = Guest(workdir, "badconfig", [(img, True), (disk, False)])
    guests.append(g)
    g.wait_console(r"^/config/appliance\.yaml:3:3: .*adress", 120)
    g.wait_console(r"vmgate exited with status 1; restarting in 1s", 10)
    # retried, not rebooted: the same error again after the back-off
    g.wait_console(r"vmgate exited with status 1; restarting in 2s", 20)
    con = g.console()
    assert len(re.findall(r"/config/appliance\.yaml:3:3: ", con)) >= 2, g.tail()
    assert con.count("Linux version") == 1 and g.proc.poll() is None
    assert ("data: /dev/vdb3 is named VMGATEDATA but is not blank" in con
            and "formatting" not in con), g.tail()
    assert "/data is in RAM" in con, g.tail()
    with open(disk, "rb") as f:
        f.seek(start)
        assert f.read(len(mark)) == mark
