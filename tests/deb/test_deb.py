"""make deb-check: the Debian package (make deb) passes lintian without
errors, installs into a Debian 12 tree made by debootstrap (kept under
build/deb-check/rootfs.base, copied for each run) with its dependencies from
Debian's archive, and there `vmgate --check` passes on the shipped
/etc/vmgate/appliance.yaml, and on a fleet configuration (libcurl,
which fleet mode loads with dlopen, is a Depends: libcurl3-gnutls). The
package carries vmgate-signer beside
vmgate (Kconfig KEY_SIGNER, the default), depends on libssl3 for it, and
makes its system user, which the installed signer, started as root,
becomes. The package runs the signer as its own unit
(vmgate-signer.socket/.service, user vmgate-signer) and vmgate uses it
through tls.signer: the chroot has no systemd, so
test_signer_units_handshake makes the socket as the socket unit says and
starts the signer and vmgate with the users and arguments their units
give, then completes a TLS handshake through them with the key readable by
the signer's user only. Needs root (chroot)."""

import glob
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEB_DIR = os.environ.get("VMGATE_DEB_DIR", os.path.join(REPO, "build", "deb"))
WORK = os.environ.get("VMGATE_DEB_WORK", os.path.join(REPO, "build", "deb-check"))
MIRROR = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")


def run(argv, timeout=600, check=True):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check:
        assert r.returncode == 0, (argv, r.returncode, r.stdout[-3000:], r.stderr[-3000:])
    return r


@pytest.fixture(scope="module")
def deb():
    debs = glob.glob(os.path.join(DEB_DIR, "vmgate_*_amd64.deb"))
    assert len(debs) == 1, "make deb first: %s" % debs
    return debs[0]


@pytest.fixture(scope="module")
def tree(deb):
    base = os.path.join(WORK, "rootfs.base")
    if not os.path.exists(os.path.join(base, "etc", "debian_version")):
        shutil.rmtree(base + ".new", ignore_errors=True)
        run(["debootstrap", "--variant=minbase", "bookworm", base + ".new", MIRROR],
            timeout=900)
        os.rename(base + ".new", base)
    root = os.path.join(WORK, "rootfs.test")
    shutil.rmtree(root, ignore_errors=True)
    run(["cp", "-a", base, root])
    shutil.copyfile("/etc/resolv.conf", os.path.join(root, "etc", "resolv.conf"))
    shutil.copyfile(deb, os.path.join(root, "tmp", os.path.basename(deb)))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def chroot(root, *argv, **kw):
    return run(["chroot", root, "env", "DEBIAN_FRONTEND=noninteractive",
                "PATH=/usr/sbin:/usr/bin:/sbin:/bin"] + list(argv), **kw)


def test_lintian_no_errors(deb):
    r = run(["lintian", "--tag-display-limit", "0", deb], check=False)
    errors = [l for l in r.stdout.splitlines() if l.startswith("E:")]
    assert not errors and r.returncode == 0, (r.returncode, r.stdout, r.stderr)


def test_installs_and_checks_in_debian_12(tree, deb):
    with open(os.path.join(tree, "etc", "debian_version")) as f:
        assert f.read().startswith("12."), "not a Debian 12 tree"
    chroot(tree, "apt-get", "update", "-q")
    chroot(tree, "apt-get", "install", "-y", "-q", "--no-install-recommends",
           "/tmp/" + os.path.basename(deb))
    r = chroot(tree, "dpkg-query", "-W", "-f=${Status} ${Conffiles}\n", "vmgate")
    assert r.stdout.startswith("install ok installed") and \
        "/etc/vmgate/appliance.yaml" in r.stdout, r.stdout
    r = chroot(tree, "vmgate", "--check", "-c", "/etc/vmgate/appliance.yaml", check=False)
    assert r.returncode == 0, ("vmgate --check failed in the tree", r)
    # the service's user, and the demo key readable by it and not by others
    chroot(tree, "getent", "passwd", "vmgate")
    # the signer beside vmgate, its library and its own system user
    r = chroot(tree, "dpkg-query", "-W", "-f=${Depends}", "vmgate")
    assert re.search(r"(^|, )libssl3 \(>= 3\.", r.stdout), r.stdout
    # fleet mode's libcurl, loaded with dlopen (not in ldd), is depended on
    # by name, and --check of a fleet configuration loads it in the tree;
    # with the library gone, --check says which and from what package
    assert re.search(r"(^|, )libcurl3-gnutls \(>= ", r.stdout), r.stdout
    with open(os.path.join(tree, "etc", "vmgate", "appliance.yaml")) as f:
        fleet_cfg = f.read() + '\nfleet:\n  etcd:\n    endpoints: ["http://127.0.0.1:2379"]\n'
    fleet_yaml = os.path.join(tree, "etc", "vmgate", "fleet.yaml")  # beside its files
    with open(fleet_yaml, "w") as f:
        f.write(fleet_cfg)
    r = chroot(tree, "vmgate", "--check", "-c", "/etc/vmgate/fleet.yaml", check=False)
    assert r.returncode == 0 and "/etc/vmgate/fleet.yaml: ok (" in r.stdout, r
    lib = os.path.realpath(os.path.join(tree, "lib/x86_64-linux-gnu/libcurl-gnutls.so.4"))
    assert lib.startswith(tree + "/") and os.path.isfile(lib), lib
    os.rename(lib, lib + ".away")
    try:
        r = chroot(tree, "vmgate", "--check", "-c", "/etc/vmgate/fleet.yaml", check=False)
    finally:
        os.rename(lib + ".away", lib)
        os.unlink(fleet_yaml)
    assert r.returncode == 1 and r.stderr.startswith(
        "/etc/vmgate/fleet.yaml: fleet mode needs libcurl-gnutls.so.4 (Debian package "
        "libcurl3-gnutls): libcurl-gnutls.so.4: cannot open shared object file"), r
    assert os.access(os.path.join(tree, "usr/sbin/vmgate-signer"), os.X_OK)
    pw = chroot(tree, "getent", "passwd", "vmgate-signer").stdout.split(":")
    assert pw[6].strip() == "/usr/sbin/nologin" and 0 < int(pw[2]) < 1000, pw
    # the installed signer, run as root, drops to that user: its first
    # line says so (timeout's SIGTERM ends it after)
    # with --socket-group the socket root made is its group's too
    r = chroot(tree, "timeout", "2", "vmgate-signer", "--socket",
               "/tmp/signer.sock", "--socket-group", "vmgate", check=False)
    assert r.returncode == 124, r
    assert re.search(r"^vmgate-signer INFO startup uid=%s gid=%s "
                     r"user=vmgate-signer " % (pw[2], pw[3]), r.stderr,
                     re.M), r
    assert re.search(r"^vmgate-signer INFO shutdown signs=0 errors=0 "
                     r"thread_signs=0(,0)*$", r.stderr, re.M), r
    r = chroot(tree, "stat", "-c", "%a %U %G %F", "/tmp/signer.sock")
    assert r.stdout.strip() == "660 root vmgate socket", r.stdout
    r = chroot(tree, "vmgate-signer", "--socket", "/tmp/signer2.sock",
               "--socket-group", "no-such-group", check=False)
    assert r.returncode == 1 and "--socket-group: no group no-such-group" in r.stderr, r
    # the demo key is the signer's user's, not vmgate's
    r = chroot(tree, "stat", "-c", "%a %U %G", "/etc/vmgate/demo/key.pem")
    assert r.stdout.strip() == "640 root vmgate-signer", r.stdout
    # and the unit's ExecStartPre, run as vmgate, passes without reading it
    r = chroot(tree, "setpriv", "--reuid=vmgate", "--regid=vmgate", "--init-groups",
               "vmgate", "--check", "-c", "/etc/vmgate/appliance.yaml", check=False)
    assert r.returncode == 0 and "/etc/vmgate/demo/key.pem: not readable by this " \
        "user: the signer (tls.signer /run/vmgate-signer/signer.sock)" in r.stdout, r
    units = {}
    for name in ("vmgate.service", "vmgate-signer.service", "vmgate-signer.socket"):
        with open(os.path.join(tree, "lib", "systemd", "system", name)) as f:
            units[name] = f.read()
    for line in ("Type=notify", "WatchdogSec=", "ExecReload=/bin/kill -HUP $MAINPID",
                 "AmbientCapabilities=CAP_NET_BIND_SERVICE", "ProtectSystem=strict",
                 "Wants=network-online.target vmgate-signer.socket",
                 "After=network-online.target vmgate-signer.socket"):
        assert line in units["vmgate.service"], line
    # systemd accepts the units (the binary paths pointed into the tree)
    d = os.path.join(WORK, "unit-verify")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for name, unit in units.items():
        with open(os.path.join(d, name), "w") as f:
            f.write(unit.replace("/usr/sbin/vmgate", os.path.join(tree, "usr/sbin/vmgate")))
    r = run(["systemd-analyze", "verify", "--man=no"] +
            [os.path.join(d, n) for n in units], check=False)
    assert r.returncode == 0 and not r.stderr.strip(), r
    # enabled on this first install (no systemctl in the tree: the links
    # are deb-systemd-helper's own)
    etc = os.path.join(tree, "etc", "systemd", "system")
    assert os.readlink(os.path.join(etc, "multi-user.target.wants", "vmgate.service")) \
        == "/lib/systemd/system/vmgate.service"
    assert os.readlink(os.path.join(etc, "sockets.target.wants", "vmgate-signer.socket")) \
        == "/lib/systemd/system/vmgate-signer.socket"
    # purge takes the conffile and the generated certificate away
    chroot(tree, "apt-get", "purge", "-y", "-q", "vmgate")
    assert not os.path.lexists(os.path.join(etc, "multi-user.target.wants",
                                            "vmgate.service"))
    assert not os.path.exists(os.path.join(tree, "etc", "vmgate"))


def test_bad_config_fails_check_in_tree(tree):
    # the binary installed above rejects a broken file with FILE:LINE:COL
    bad = os.path.join(tree, "tmp", "bad.yaml")
    with open(bad, "w") as f:
        f.write("listen:\n  ports: [443]\n  adress: x\n")
    r = chroot(tree, "sh", "-c", "apt-get install -y -q /tmp/vmgate_*_amd64.deb "
               ">/dev/null && vmgate --check -c /tmp/bad.yaml", check=False)
    assert r.returncode == 1 and "/tmp/bad.yaml:3:3: unknown key 'adress'" in r.stdout + r.stderr, r


def test_without_the_signer_vmgate_reads_the_demo_key(tree):
    """A package built without the signer (Kconfig KEY_SIGNER=n: no
    /usr/sbin/vmgate-signer) makes the demo key group vmgate, which reads
    it itself: it was root:vmgate-signer, and the unit's ExecStartPre
    (vmgate --check as vmgate) failed, so vmgate never started."""
    chroot(tree, "sh", "-c", "apt-get install -y -q /tmp/vmgate_*_amd64.deb >/dev/null")
    try:
        os.rename(os.path.join(tree, "usr/sbin/vmgate-signer"),
                  os.path.join(tree, "tmp/vmgate-signer.away"))
        shutil.rmtree(os.path.join(tree, "etc/vmgate/demo"))
        chroot(tree, "/var/lib/dpkg/info/vmgate.postinst", "configure")
        r = chroot(tree, "stat", "-c", "%a %U %G", "/etc/vmgate/demo/key.pem")
        assert r.stdout.strip() == "640 root vmgate", r.stdout
        # vmgate's user reads it (it was root's and vmgate-signer's only)
        r = chroot(tree, "setpriv", "--reuid=vmgate", "--regid=vmgate", "--init-groups",
                   "sh", "-c", "head -c 10 /etc/vmgate/demo/key.pem >/dev/null", check=False)
        assert r.returncode == 0, r
    finally:
        os.rename(os.path.join(tree, "tmp/vmgate-signer.away"),
                  os.path.join(tree, "usr/sbin/vmgate-signer"))
        chroot(tree, "sh", "-c", "apt-get purge -y -q vmgate >/dev/null")


FAKE_SYSTEMCTL = """#!/bin/sh
# the deb-check tree's stand-in for systemd's systemctl: says every unit
# is enabled and active, and writes down what it was asked
echo "$*" >>/tmp/systemctl.log
case " $* " in
*" is-enabled "*) echo enabled ;;
esac
exit 0
"""


def test_units_follow_install_upgrade_remove(tree):
    """The maintainer scripts enable and start the units on a first install,
    restart them on an upgrade (the signer, then vmgate: the old binaries
    kept running from deleted files), stop them on removal (vmgate first,
    it drains while the signer still signs) and forget them on purge:
    with systemd "running" (/run/systemd/system and a systemctl that logs
    its calls; deb-systemd-invoke is the real one)."""
    log = os.path.join(tree, "tmp", "systemctl.log")
    fake = os.path.join(tree, "usr", "bin", "systemctl")
    rundir = os.path.join(tree, "run", "systemd", "system")
    etc = os.path.join(tree, "etc", "systemd", "system")
    with open(fake, "w") as f:
        f.write(FAKE_SYSTEMCTL)
    os.chmod(fake, 0o755)
    os.makedirs(rundir, exist_ok=True)

    def calls():
        with open(log) as f:
            text = f.read()
        os.unlink(log)
        return [l for l in text.splitlines()
                if not l.startswith(("--system is-enabled", "--system --quiet is-active"))]

    try:
        chroot(tree, "sh", "-c", "apt-get purge -y -q vmgate >/dev/null 2>&1; "
               "rm -f /tmp/systemctl.log; "
               "apt-get install -y -q /tmp/vmgate_*_amd64.deb >/dev/null")
        c = calls()
        assert "--system daemon-reload" in c, c
        assert "--quiet --system start vmgate-signer.socket vmgate.service" in c, c
        # with systemctl there, deb-systemd-helper enables through presets
        for u in ("vmgate-signer.socket", "vmgate.service"):
            assert "--root=/ --system --preset-mode=enable-only preset " + u in c, c
        # the same package again is an upgrade to dpkg
        chroot(tree, "sh", "-c", "dpkg -i /tmp/vmgate_*_amd64.deb >/dev/null")
        c = calls()
        sig = c.index("--quiet --system restart vmgate-signer.socket vmgate-signer.service")
        assert c.index("--quiet --system restart vmgate.service") > sig, c
        assert not [l for l in c if " stop " in " %s " % l], c
        chroot(tree, "dpkg", "-r", "vmgate")
        c = calls()
        assert c.index("stop vmgate.service") < \
            c.index("stop vmgate-signer.service vmgate-signer.socket"), c
        assert os.readlink(os.path.join(etc, "vmgate.service")) == "/dev/null"
        chroot(tree, "dpkg", "-P", "vmgate")
        assert not os.path.lexists(os.path.join(etc, "vmgate.service"))
        assert not os.path.lexists(os.path.join(etc, "multi-user.target.wants",
                                                "vmgate.service"))
    finally:
        os.unlink(fake)
        shutil.rmtree(os.path.join(tree, "run", "systemd"), ignore_errors=True)
        if os.path.exists(log):
            os.unlink(log)


def unit_keys(tree, name):
    """{key: value} of a systemd unit the package installed (the last
    assignment of a key wins, as in systemd)."""
    keys = {}
    with open(os.path.join(tree, "lib", "systemd", "system", name)) as f:
        for line in f:
            line = line.strip()
            if line and line[0] not in "#;[" and "=" in line:
                k, v = line.split("=", 1)
                keys[k.strip()] = v.strip()
    return keys


def ids(tree, db, name):
    return [int(x) for x in chroot(tree, "getent", db, name).stdout.split(":")[2:4]
            if x.strip().isdigit()]


def wait_file(path, pattern, proc, timeout=10.0):
    """Polls |path| until |pattern| is in it; fails if |proc| exits first."""
    deadline = time.monotonic() + timeout
    while True:
        with open(path) as f:
            text = f.read()
        if re.search(pattern, text, re.M):
            return text
        assert proc.poll() is None, ("exited", proc.returncode, text)
        assert time.monotonic() < deadline, ("no %r in time" % pattern, text)
        time.sleep(0.05)


def e2e_free_ports(n):
    """|n| TCP ports free right now (bound to port 0 together, released)."""
    socks = [socket.socket(socket.AF_INET6) for _ in range(n)]
    for s in socks:
        s.bind(("::", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def echo_server():
    """A real TCP echo server on [::1]:port, one thread per connection."""
    srv = socket.socket(socket.AF_INET6)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("::1", 0))
    srv.listen(8)

    def serve(c):
        with c:
            while True:
                b = c.recv(65536)
                if not b:
                    return
                c.sendall(b)

    def loop():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(c,), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()
    return srv


def test_signer_units_handshake(tree):
    chroot(tree, "sh", "-c", "apt-get install -y -q /tmp/vmgate_*_amd64.deb >/dev/null")
    sock = unit_keys(tree, "vmgate-signer.socket")
    svc = unit_keys(tree, "vmgate-signer.service")
    gate = unit_keys(tree, "vmgate.service")
    # the signer's unit: its own user, no capabilities, no network, the
    # socket systemd makes 0660 for group vmgate
    assert (svc["User"], svc["Group"]) == ("vmgate-signer", "vmgate-signer"), svc
    assert svc["CapabilityBoundingSet"] == "" and svc["NoNewPrivileges"] == "yes"
    assert svc["PrivateNetwork"] == "yes" and svc["RestrictAddressFamilies"] == "AF_UNIX"
    assert svc["ProtectSystem"] == "strict" and svc["Requires"] == "vmgate-signer.socket"
    assert (sock["SocketUser"], sock["SocketGroup"], sock["SocketMode"]) == \
        ("vmgate-signer", "vmgate", "0660"), sock
    assert gate["User"] == "vmgate" and "vmgate-signer.socket" in gate["Wants"].split()
    # the shipped configuration uses that signer
    with open(os.path.join(tree, "etc", "vmgate", "appliance.yaml")) as f:
        shipped = yaml.safe_load(f)
    sock_path = sock["ListenStream"]
    assert shipped["tls"]["signer"] == sock_path, shipped["tls"]
    su_uid, su_gid = ids(tree, "passwd", "vmgate-signer")
    vg_uid, vg_gid = ids(tree, "passwd", "vmgate")
    assert ids(tree, "group", "vmgate")[0] == vg_gid
    key = "/etc/vmgate/demo/key.pem"
    r = chroot(tree, "setpriv", "--reuid=vmgate", "--regid=vmgate", "--init-groups",
               "cat", key, check=False)
    assert r.returncode != 0 and "Permission denied" in r.stderr, r

    # vmgate-signer.socket, as systemd makes it
    host_sock = os.path.join(tree, sock_path.lstrip("/"))
    os.makedirs(os.path.dirname(host_sock), mode=int(sock.get("DirectoryMode", "0755"), 8),
                exist_ok=True)
    lsock = socket.socket(socket.AF_UNIX)
    lsock.bind(host_sock)
    os.chown(host_sock, su_uid, vg_gid)
    os.chmod(host_sock, int(sock["SocketMode"], 8))
    lsock.listen(128)
    r = chroot(tree, "stat", "-c", "%a %U %G %F", sock_path)
    assert r.stdout.strip() == "660 vmgate-signer vmgate socket", r.stdout

    procs, logs = [], os.path.join(WORK, "logs")
    shutil.rmtree(logs, ignore_errors=True)
    os.makedirs(logs)
    srv = echo_server()
    try:
        # vmgate-signer.service: its user and group (initgroups: none
        # more), its ExecStart, the listening socket as descriptor 3
        fd = lsock.fileno()
        signer_log = os.path.join(logs, "signer.log")
        with open(signer_log, "w") as err:
            signer = subprocess.Popen(
                ["chroot", "--userspec=%d:%d" % (su_uid, su_gid), "--groups=%d" % su_gid,
                 tree, "/bin/bash", "-c", 'exec "$@" 3<&%d %d<&-' % (fd, fd), "bash"] +
                svc["ExecStart"].split(), pass_fds=(fd,), stdin=subprocess.DEVNULL,
                stdout=err, stderr=err)
        procs.append(signer)
        lsock.close()
        text = wait_file(signer_log, r"^vmgate-signer INFO serving ", signer)
        assert re.search(r"^vmgate-signer INFO startup uid=%d gid=%d user=vmgate-signer "
                         r"capabilities=none " % (su_uid, su_gid), text, re.M), text

        # a user in neither group cannot connect; root made it, so it can
        pid = os.fork()
        if pid == 0:
            code = 3
            try:
                os.chroot(tree)
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
                c = socket.socket(socket.AF_UNIX)
                try:
                    c.connect(sock_path)
                    code = 1
                except PermissionError:
                    code = 0
            finally:
                os._exit(code)
        assert os.waitpid(pid, 0)[1] == 0, "nobody could connect to the signer"

        # vmgate.service: user vmgate, on the shipped configuration but for
        # a loopback port of the test and a VM on ::1 (its echo server)
        port, vm_port = e2e_free_ports(1)[0], srv.getsockname()[1]
        cfg = dict(shipped)
        cfg["workers"] = 1
        cfg["listen"] = {"address": "::1", "ports": [port]}
        cfg["tls"] = dict(shipped["tls"], alpn=["http/1.1"])
        cfg["tls"].pop("alpn_ports", None)
        cfg["domains"] = [{"suffix": "vm.example.org", "port_map": {port: vm_port}}]
        cfg["vms"] = [{"id": "example", "address": "::1"}]
        with open(os.path.join(tree, "etc", "vmgate", "test.yaml"), "w") as f:
            yaml.safe_dump(cfg, f)
        gate_log = os.path.join(logs, "vmgate.log")
        with open(gate_log, "w") as err:
            vmgate = subprocess.Popen(
                ["chroot", "--userspec=%d:%d" % (vg_uid, vg_gid), "--groups=%d" % vg_gid,
                 tree, "/usr/sbin/vmgate", "-c", "/etc/vmgate/test.yaml"],
                stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        procs.append(vmgate)
        wait_file(gate_log, r" INFO ready", vmgate)
        # the signer opened the key by its path, as its own user
        wait_file(signer_log, r"^vmgate-signer INFO load key_id=\S+ "
                  r"path=/etc/vmgate/demo/key.pem keys=1", signer)

        ctx = ssl.create_default_context(
            cafile=os.path.join(tree, "etc", "vmgate", "demo", "fullchain.pem"))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        with socket.create_connection(("::1", port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="example.vm.example.org") as tls:
                tls.sendall(b"through the installed vmgate\n")
                got = b""
                while len(got) < 29:
                    b = tls.recv(64)
                    assert b, got
                    got += b
                assert got == b"through the installed vmgate\n", got
        signer.terminate()
        signer.wait(timeout=10)
        procs.remove(signer)
        text = open(signer_log).read()
        m = re.search(r"^vmgate-signer INFO shutdown signs=(\d+) errors=0 "
                      r"thread_signs=[\d,]+$", text, re.M)
        assert m and int(m.group(1)) >= 1, text
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        srv.close()
        if os.path.exists(host_sock):
            os.unlink(host_sock)
