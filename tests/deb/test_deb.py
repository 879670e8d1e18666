"""make deb-check: the Debian package (make deb) passes lintian without
errors, installs into a Debian 12 tree made by debootstrap (kept under
build/deb-check/rootfs.base, copied for each run) with its dependencies from
Debian's archive, and there `vmgate --check` passes on the shipped
/etc/vmgate/appliance.yaml. The package carries vmgate-signer beside
vmgate (Kconfig KEY_SIGNER, the default), depends on libssl3 for it, and
makes its system user, which the installed signer, started as root,
becomes. Needs root (chroot)."""

import glob
import os
import re
import shutil
import subprocess

import pytest

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
    assert os.access(os.path.join(tree, "usr/sbin/vmgate-signer"), os.X_OK)
    pw = chroot(tree, "getent", "passwd", "vmgate-signer").stdout.split(":")
    assert pw[6].strip() == "/usr/sbin/nologin" and 0 < int(pw[2]) < 1000, pw
    # the installed signer, run as root, drops to that user: its first
    # line says so (timeout's SIGTERM ends it after)
    r = chroot(tree, "timeout", "2", "vmgate-signer", "--socket",
               "/tmp/signer.sock", check=False)
    assert r.returncode == 124, r
    assert re.search(r"^vmgate-signer INFO startup uid=%s gid=%s "
                     r"user=vmgate-signer " % (pw[2], pw[3]), r.stderr,
                     re.M), r
    assert "vmgate-signer INFO shutdown signs=0 errors=0" in r.stderr, r
    r = chroot(tree, "stat", "-c", "%a %U %G", "/etc/vmgate/demo/key.pem")
    assert r.stdout.strip() == "640 root vmgate", r.stdout
    with open(os.path.join(tree, "lib", "systemd", "system", "vmgate.service")) as f:
        unit = f.read()
    for line in ("Type=notify", "WatchdogSec=", "ExecReload=/bin/kill -HUP $MAINPID",
                 "AmbientCapabilities=CAP_NET_BIND_SERVICE", "ProtectSystem=strict"):
        assert line in unit
    # systemd accepts the unit (the binary path pointed into the tree)
    d = os.path.join(WORK, "unit-verify")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    with open(os.path.join(d, "vmgate.service"), "w") as f:
        f.write(unit.replace("/usr/sbin/vmgate", os.path.join(tree, "usr/sbin/vmgate")))
    r = run(["systemd-analyze", "verify", "--man=no", os.path.join(d, "vmgate.service")],
            check=False)
    assert r.returncode == 0 and not r.stderr.strip(), r
    # purge takes the conffile and the generated certificate away
    chroot(tree, "apt-get", "purge", "-y", "-q", "vmgate")
    assert not os.path.exists(os.path.join(tree, "etc", "vmgate"))


def test_bad_config_fails_check_in_tree(tree):
    # the binary installed above rejects a broken file with FILE:LINE:COL
    bad = os.path.join(tree, "tmp", "bad.yaml")
    with open(bad, "w") as f:
        f.write("listen:\n  ports: [443]\n  adress: x\n")
    r = chroot(tree, "sh", "-c", "apt-get install -y -q /tmp/vmgate_*_amd64.deb "
               ">/dev/null && vmgate --check -c /tmp/bad.yaml", check=False)
    assert r.returncode == 1 and "/tmp/bad.yaml:3:3: unknown key 'adress'" in r.stdout + r.stderr, r
