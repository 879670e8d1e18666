"""libcurl only in fleet mode: vmgate does not link it, ctl/etcd.c loads
libcurl-gnutls.so.4 with dlopen (RTLD_DEEPBIND) when fleet mode starts.

Its GnuTLS build's dependencies (libssh2, krb5) bring OpenSSL's
libcrypto.so.3, whose versioned EVP_* references glibc would otherwise
bind to BoringSSL's unversioned libcrypto.so.0 in vmgate. Checked here:
the session's gate (no fleet: section) has none of that tree mapped; a
fleet gate on one etcd member (test_fleet's EtcdCluster) has it mapped
and routes a VM put into etcd, and its admin API's PUT lands in etcd;
LD_DEBUG=bindings of --check on a fleet config shows libcurl's tree
binding nothing to BoringSSL (plain builds: the sanitizers' runtime
refuses RTLD_DEEPBIND); a library that is not there, or lacks a symbol,
is a clear error from --check and at start, and a config without fleet:
never loads it.
"""

import glob
import os
import subprocess

import pytest

from e2e_util import wait_until
from test_fleet import EtcdCluster, FleetGate

# Fleet mode is control plane (etcd, the fleet and admin threads): what it
# checks is the same in every socket mode and key path, so the runs of
# the suite after `make e2e` leave it out (E2E_AGAIN: -m 'not once').
pytestmark = pytest.mark.once

ANDROID = "/usr/lib/x86_64-linux-gnu/android/"
CURL_TREE = ("libcurl", "libgnutls", "libssh2", "libcrypto.so.3", "libk5crypto")


def maps(pid):
    with open("/proc/%d/maps" % pid) as f:
        return {l.split()[5] for l in f if len(l.split()) > 5}


def sanitized(binary):
    r = subprocess.run(["ldd", binary], capture_output=True, text=True)
    return "libasan" in r.stdout


@pytest.fixture(scope="module")
def etcd1(tmp_path_factory):
    with EtcdCluster(str(tmp_path_factory.mktemp("etcd-libcurl")), n=1) as c:
        yield c


@pytest.fixture
def fleet_gate(etcd1, gate_bin, certs, tmp_path):
    g = FleetGate(gate_bin, str(tmp_path / "gate"), certs, etcd1, "edge-curl")
    g.start()
    try:
        wait_until(lambda: g.fleet_status()["watch"] == "watching", 10,
                   what="fleet gate watching")
        yield g
    finally:
        g.stop()


def check(gate_bin, cfg, env=None):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([gate_bin[0], "--check", "-c", cfg], capture_output=True,
                          text=True, env=e, timeout=30)


def test_plain_gate_maps_no_libcurl(live_gate):
    m = maps(live_gate.proc.pid)
    assert ANDROID + "libcrypto.so.0" in m, sorted(m)  # the right process
    mapped = sorted(p for p in m if any(t in os.path.basename(p) for t in CURL_TREE))
    assert not mapped, mapped


def test_fleet_gate_maps_libcurl_and_routes(fleet_gate, etcd1, fleet):
    m = maps(fleet_gate.proc.pid)
    names = {os.path.basename(p) for p in m}
    assert any(n.startswith("libcurl-gnutls.so.4") for n in names), sorted(names)
    assert "libcrypto.so.3" in names, sorted(names)  # libcurl's own tree
    vm1 = fleet.addr("vm1")
    etcd1.put("fcurl", {"address": vm1})
    wait_until(lambda: fleet_gate.routes("fcurl"), 3, what="etcd put routed")
    st, j = fleet_gate.api("PUT", "/vms/fcurl2", {"address": vm1})
    assert st == 201, (st, j)
    assert etcd1.vms().get("fcurl2") == vm1, etcd1.vms()
    assert fleet_gate.routes("fcurl2")
    etcd1.clean_vms()


def test_fleet_libcurl_binds_nothing_to_boringssl(fleet_gate, gate_bin, tmp_path):
    """RTLD_NOW resolves every symbol of libcurl's tree at dlopen: with
    LD_DEBUG=bindings each binding is a line. Without RTLD_DEEPBIND there
    were 1,409 from libssh2 and libcrypto.so.3 to BoringSSL."""
    if sanitized(gate_bin[0]):
        pytest.skip("sanitized build: ASan refuses RTLD_DEEPBIND, libcurl binds as "
                    "a linked one did")
    out = str(tmp_path / "ld")
    r = check(gate_bin, fleet_gate.cfg_path,
              {"LD_DEBUG": "bindings", "LD_DEBUG_OUTPUT": out})
    assert r.returncode == 0, r
    (log,) = glob.glob(out + ".*")
    with open(log) as f:
        lines = [l for l in f if "binding file " in l]
    own = [l for l in lines if "libssh2.so.1 [0] to /lib/x86_64-linux-gnu/libcrypto.so.3" in l
           or "libssh2.so.1 [0] to /usr/lib/x86_64-linux-gnu/libcrypto.so.3" in l]
    assert own, "no binding of libssh2 seen: was libcurl loaded?\n%s" % "".join(lines[-20:])
    bad = [l.strip() for l in lines
           if (" to " + ANDROID) in l and ("file " + ANDROID) not in l
           and not l.split("binding file ")[1].startswith(gate_bin[0] + " ")]
    assert not bad, "%d bindings into BoringSSL, e.g.\n%s" % (len(bad), "\n".join(bad[:10]))


def test_missing_libcurl_is_a_clear_error(fleet_gate, gate_bin, certs, etcd1, tmp_path):
    """LD_LIBRARY_PATH is searched first: an empty file there is a library
    that cannot be loaded, another library under that name one that lacks
    curl's symbols."""
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "libcurl-gnutls.so.4").write_bytes(b"")
    other = tmp_path / "other"
    other.mkdir()
    with open("/lib/x86_64-linux-gnu/libz.so.1", "rb") as f:
        (other / "libcurl-gnutls.so.4").write_bytes(f.read())
    want = "fleet mode needs libcurl-gnutls.so.4 (Debian package libcurl3-gnutls): "
    cfg = fleet_gate.cfg_path
    for d, why in ((empty, "libcurl-gnutls.so.4: file too short"),
                   (other, "libcurl-gnutls.so.4: undefined symbol: curl_global_init")):
        r = check(gate_bin, cfg, {"LD_LIBRARY_PATH": str(d)})
        assert r.returncode == 1, r
        assert r.stderr.startswith("%s: %s%s/%s" % (cfg, want, d, why)), r.stderr

    # At start: one error line, exit status 1.
    g = FleetGate(gate_bin, str(tmp_path / "gate2"), certs, etcd1, "edge-nocurl")
    env = dict(os.environ, LD_LIBRARY_PATH=str(empty))
    with open(g.log_path, "ab") as logf:
        p = subprocess.Popen(gate_bin + ["-c", g.cfg_path], stdout=logf,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    try:
        rc = p.wait(15)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert rc == 1, (rc, g.text())
    assert "ERROR startup %s%s/libcurl-gnutls.so.4: file too short" % (want, empty) \
        in g.text(), g.text()

    # Without fleet: the library is never looked for.
    plain = tmp_path / "plain.yaml"
    with open(cfg) as f:
        plain.write_text(f.read().split("\nfleet:\n")[0] + "\n")
    r = check(gate_bin, str(plain), {"LD_LIBRARY_PATH": str(empty)})
    assert r.returncode == 0 and ": ok (" in r.stdout, r
