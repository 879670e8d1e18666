"""vmgate-signer (issue 14): the private keys live in a separate process.

Runs against the build under test, build/vmgate or $VMGATE_BIN: the
default build has Kconfig KEY_SIGNER=y (make e2e), build/inproc/ has
KEY_SIGNER=n (make e2e-inproc), where vmgate holds the keys itself. Which
one it is comes from the build's config.h and its --version line, which
must agree; build/vmgate must be the signer build (the default). Each
test starts a gate of its own (ports 224xx), with the signer supervised
by it.

  - ECDSA P-256 and RSA-2048 certificates, TLS 1.2 and 1.3, RSA-PSS and
    RSA PKCS#1: real handshakes (openssl s_client), signed by the signer
    (a capability-less, seccomp'd child that stays the same, running as
    the user vmgate-signer, or where there is none saying that it kept
    the invoking user), or in the
    in-process build by vmgate, with no signer anywhere.
  - The signer SIGKILLed under a load of new handshakes: full handshakes
    fail fast with internal_error (none waits past the bound), TLS 1.2
    resumptions go on throughout, an established stream stays byte-exact,
    and the signer is back (a new pid) with full handshakes working.
    Signer build only: the in-process build has nothing to kill.
  - Where the private keys are (/proc/PID/mem over its mappings): with
    the signer, neither key's secret (the EC scalar, an RSA prime) nor its
    PEM text is in vmgate's memory and the same search finds the EC scalar
    in the signer's; in the in-process build it finds it in vmgate's.
  - A reload with a new certificate loads its key (into the signer before
    it is published); one whose key does not match is refused.
"""

import os
import pwd
import re
import signal
import ssl
import subprocess
import threading
import time

import pytest

from e2e_net import run
from e2e_util import (REPO, Gate, gate_config, recv_all, tls_connect)

PORT = 22401
ECHO = 8080
SIGNER_TIMEOUT_S = 1.0  # Kconfig KEY_SIGNER_TIMEOUT_MS's default


def gate_build():
    """The build under test's argv and its keys: "signer" (Kconfig
    KEY_SIGNER=y) or "in-process"."""
    argv = (os.environ.get("VMGATE_BIN") or
            os.path.join(REPO, "build", "vmgate")).split()
    if not os.path.exists(argv[0]):
        return argv, None
    m = re.search(r"; keys=(signer|in-process);",
                  run([argv[0], "--version"]).stdout)
    return argv, m.group(1) if m else None


GATE_ARGV, KEYS = gate_build()
needs_signer = pytest.mark.skipif(
    KEYS != "signer", reason="%s was built with Kconfig KEY_SIGNER=n "
    "(keys=%s): no vmgate-signer" % (GATE_ARGV[0], KEYS))


def build_config_h(binary):
    """config.h of the build |binary| belongs to: beside it (build/,
    build/inproc/, ...), or build/'s for the sanitized build/asan/."""
    for d in (os.path.dirname(binary),
              os.path.join(os.path.dirname(binary), "..")):
        p = os.path.join(d, "config.h")
        if os.path.exists(p):
            with open(p) as f:
                return p, f.read()
    pytest.fail("no config.h beside or above %s" % binary)


def test_build_keys_as_configured():
    binary = os.path.realpath(GATE_ARGV[0])
    assert KEYS, "%s --version names no keys=signer|in-process" % binary
    path, conf = build_config_h(binary)
    on = re.search(r"^#define CONFIG_KEY_SIGNER 1$", conf, re.M) is not None
    assert on == (KEYS == "signer"), \
        "%s says keys=%s, %s says KEY_SIGNER=%s" % (binary, KEYS, path, on)
    # The signer is the default: `make` builds it (stale build/.config
    # from before the default changed: make defconfig).
    if binary == os.path.realpath(os.path.join(REPO, "build", "vmgate")):
        assert KEYS == "signer", \
            "build/vmgate has keys=%s: Kconfig KEY_SIGNER defaults to y" % KEYS
    signer = os.path.join(os.path.dirname(binary), "vmgate-signer")
    if KEYS == "signer":
        assert os.access(signer, os.X_OK), "no %s beside vmgate" % signer


def config_text(certs, fleet, extra=""):
    # Both names (ECDSA, RSA) reach the echo backend.
    pm = "{ %d: %d }" % (PORT, ECHO)
    return gate_config(certs, [("vm1", fleet.addr("vm1"))], ports=[PORT],
                       port_map=pm, allowed_ports="[%d]" % PORT,
                       other_port_map=pm) + extra


@pytest.fixture
def sgate(certs, fleet, workdir, request):
    name = "signer-%s" % request.node.name
    cfg = os.path.join(workdir, name + ".yaml")
    with open(cfg, "w") as f:
        f.write(config_text(certs, fleet))
    g = Gate(GATE_ARGV, cfg, os.path.join(workdir, name + ".log"),
             ports=[PORT], wait_port=PORT)
    g.start(timeout=10)
    yield g
    g.stop()


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        comm = st[st.index("(") + 1:st.rindex(")")]
        ppid = int(st[st.rindex(")") + 2:].split()[1])
        if ppid == pid:
            out.append((int(d), comm))
    return out


def signer_pid(g):
    pids = [p for p, comm in children(g.proc.pid) if comm == "vmgate-signer"]
    assert len(pids) == 1, "vmgate's children: %s" % children(g.proc.pid)
    return pids[0]


def wait_for(fn, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError("timed out waiting for " + what)


def s_client(certs, host, args):
    p = subprocess.run(
        ["openssl", "s_client", "-connect", "127.0.0.1:%d" % PORT,
         "-servername", host, "-CAfile", certs.ca, "-verify_return_error",
         "-brief"] + args,
        input=b"", capture_output=True, timeout=20)
    return p.returncode, p.stdout.decode() + p.stderr.decode()


CASES = [
    # host, s_client args, what the peer signature must be
    ("vm1.vm.test", ["-tls1_3"], "ECDSA"),
    ("vm1.vm.test", ["-tls1_2"], "ECDSA"),
    ("vm1.other.test", ["-tls1_3"], "RSA-PSS"),
    ("vm1.other.test", ["-tls1_2", "-sigalgs", "RSA-PSS+SHA256"], "RSA-PSS"),
    ("vm1.other.test", ["-tls1_2", "-sigalgs", "RSA+SHA256"], "RSA"),
    ("vm1.other.test", ["-tls1_2", "-sigalgs", "RSA+SHA512"], "RSA"),
]


def test_handshakes_signed(sgate, certs):
    log0 = sgate.mark()
    if KEYS == "signer":
        sgate.wait_log(r"INFO signer pid=\d+ socket=\S+ keys=2", since=0)
        pid = signer_pid(sgate)
        # What the signer gave up before serving.
        with open("/proc/%d/status" % pid) as f:
            st = dict(l.split(":", 1) for l in f.read().splitlines()
                      if ":" in l)
        assert st["CapEff"].strip() == "0" * 16, st["CapEff"]
        assert st["NoNewPrivs"].strip() == "1"
        assert st["Seccomp"].strip() == "2"  # a filter
        # Its own user where there is one, else the log says it is not.
        uid = int(st["Uid"].split()[0])
        try:
            want = pwd.getpwnam("vmgate-signer").pw_uid
            sgate.wait_log(r"vmgate-signer INFO startup uid=%d .*"
                           r"user=vmgate-signer " % want, since=0)
        except KeyError:
            want = os.getuid()
            sgate.wait_log(r"vmgate-signer WARN startup uid=%d .*"
                           r"user=invoking .*reason=\"no user vmgate-signer"
                           % want, since=0)
        assert uid == want, (uid, want)
    for host, args, sig in CASES:
        rc, out = s_client(certs, host, args)
        assert rc == 0, "%s %s: s_client failed:\n%s" % (host, args, out)
        assert "Verification: OK" in out, out
        m = re.search(r"^Signature type: (\S+)", out, re.M)
        assert m and m.group(1) == sig, "%s %s: %s" % (host, args, out)
        if "RSA+SHA512" in args:
            assert re.search(r"^Hash used: SHA512", out, re.M), out
    assert not sgate.find(r"reason=tls_error", since=log0), sgate.tail()
    if KEYS == "signer":
        # Nothing signed in process: the handshakes ended well, the signer
        # stayed the same, and without it no full handshake works (next
        # test).
        assert signer_pid(sgate) == pid
    else:
        # Signed by vmgate itself: no signer started, none asked.
        assert not children(sgate.proc.pid), children(sgate.proc.pid)
        assert not sgate.find(r" signer ", since=0), sgate.tail()


def echo_check(s, size):
    data = os.urandom(size)
    s.sendall(data)
    got = recv_all(s, limit=size, timeout=10)
    assert got == data, "stream not byte-exact (%d of %d bytes)" % (
        len(got), size)


@needs_signer
@pytest.mark.timeout(60)
def test_signer_killed_under_load(sgate, certs):
    ctx = certs.client_ctx()
    ctx12 = certs.client_ctx(maxv=ssl.TLSVersion.TLSv1_2)
    host = "vm1.vm.test"
    stream = tls_connect(ctx, host, PORT)
    echo_check(stream, 65536)
    with tls_connect(ctx12, host, PORT) as s:
        echo_check(s, 16)
        session = s.session
    old = signer_pid(sgate)

    results = []  # (started after the kill, ok, seconds, error, ended)
    killed_at = [None]
    stop = threading.Event()

    def full_handshakes():
        while not stop.is_set():
            t0 = time.monotonic()
            after = killed_at[0] is not None and t0 >= killed_at[0]
            try:
                with tls_connect(ctx, host, PORT, timeout=5) as s:
                    echo_check(s, 64)
                t1 = time.monotonic()
                results.append((after, True, t1 - t0, "", t1))
            except (ssl.SSLError, OSError) as e:
                t1 = time.monotonic()
                results.append((after, False, t1 - t0, str(e), t1))
            if len(results) > 4000:  # bounded whatever happens
                return

    threads = [threading.Thread(target=full_handshakes) for _ in range(2)]
    for t in threads:
        t.start()
    resumed = []
    try:
        wait_for(lambda: len(results) >= 20, 10, "handshakes before the kill")
        killed_at[0] = time.monotonic()
        os.kill(old, signal.SIGKILL)
        # Resumptions sign nothing: they go on while the signer is gone.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with tls_connect(ctx12, host, PORT, session=session) as s:
                resumed.append(s.session_reused)
                echo_check(s, 32)
            kids = [p for p, c in children(sgate.proc.pid)
                    if c == "vmgate-signer"]
            if (kids and kids[0] != old and
                    any(r[0] and r[1] for r in results[-4:])):
                break
            time.sleep(0.005)
    finally:
        stop.set()
        for t in threads:
            t.join(20)

    # Before: ended before the kill; after: started after it. The few
    # under way at the kill may go either way, but not slowly.
    before = [r for r in results if r[4] < killed_at[0]]
    after = [r for r in results if r[0]]
    failed = [r for r in results if not r[1]]
    assert before and all(r[1] for r in before), \
        [r for r in before if not r[1]][:5]
    assert failed, "no full handshake failed while the signer was gone"
    kinds = {}
    for _, _, secs, err, _ in failed:
        assert secs < SIGNER_TIMEOUT_S + 1.0, "a failure took %.2fs" % secs
        kinds[err] = kinds.get(err, 0) + 1
    print("failures: %s" % kinds)
    assert any("INTERNAL_ERROR" in k.upper() for k in kinds), kinds

    def twenty_full():
        for _ in range(20):
            try:
                with tls_connect(ctx, host, PORT, timeout=5) as s:
                    echo_check(s, 16)
            except (ssl.SSLError, OSError):
                return False
        return True
    # Every worker's channel is back within its back-off.
    wait_for(twenty_full, 5, "20 full handshakes in a row after the restart")
    assert len(resumed) >= 3 and all(resumed), resumed
    assert signer_pid(sgate) != old
    sgate.wait_log(r"WARN signer_exit signal=9", since=0)
    # The stream opened before the kill never noticed.
    echo_check(stream, 65536)
    stream.close()
    print("signer kill: %d full handshakes before, %d after (%d failed, "
          "slowest failure %.3fs), %d resumptions all resumed"
          % (len(before), len(after), len(failed),
             max(r[2] for r in failed), len(resumed)))


def key_secrets(path):
    """The bytes a key cannot be without: an EC key's scalar, an RSA key's
    first prime; and the first base64 line of its PEM text."""
    text = run(["openssl", "pkey", "-in", path, "-text", "-noout"]).stdout
    m = re.search(r"(?:priv|prime1):\s*\n((?:\s+[0-9a-f:]+\n)+)", text)
    assert m, text
    secret = bytes.fromhex(re.sub(r"[\s:]", "", m.group(1)))
    secret = secret.lstrip(b"\0")
    with open(path) as f:
        pem_line = f.read().splitlines()[1].encode()
    # A BIGNUM or an EC scalar is kept as little-endian words: the big-
    # endian bytes reversed.
    return [secret, secret[::-1], pem_line]


def memory_holds(pid, needles):
    """Which of |needles| some readable mapping of |pid| holds."""
    found = set()
    with open("/proc/%d/maps" % pid) as maps, \
            open("/proc/%d/mem" % pid, "rb", 0) as mem:
        for line in maps:
            f = line.split()
            lo, hi = (int(x, 16) for x in f[0].split("-"))
            if f[1][0] != "r" or (len(f) > 5 and f[5] in ("[vvar]",
                                                          "[vsyscall]")):
                continue
            try:
                mem.seek(lo)
                data = mem.read(hi - lo)
            except OSError:
                continue
            for i, n in enumerate(needles):
                if n in data:
                    found.add(i)
    return found


def test_private_key_only_where_the_build_keeps_it(sgate, certs):
    for host, args, _ in CASES[:3]:
        rc, out = s_client(certs, host, args)
        assert rc == 0, out
    ec = key_secrets(certs.vm_key)
    rsa = key_secrets(certs.other_key)
    needles = ec + rsa
    assert all(len(n) >= 32 for n in needles)
    held = memory_holds(sgate.proc.pid, needles)
    if KEYS != "signer":
        # KEY_SIGNER=n: vmgate holds the keys, and the search finds the
        # EC scalar in its memory.
        assert {0, 1} & held, "the search does not find the EC scalar " \
            "in the in-process build's vmgate, which holds it"
        return
    assert not held, "vmgate's memory holds key material: %s" % sorted(held)
    # The control: the signer, which holds the keys, is found to.
    assert {0, 1} & memory_holds(signer_pid(sgate), needles), \
        "the search does not find the EC scalar even in the signer"


def test_reload_loads_keys_first(sgate, certs, fleet, workdir):
    d = os.path.join(workdir, "signer-reload")
    os.makedirs(d, exist_ok=True)
    cert, key = os.path.join(d, "new.pem"), os.path.join(d, "new.key")
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:P-384", "-nodes", "-days", "2", "-subj",
         "/CN=*.vm.test", "-addext", "subjectAltName=DNS:*.vm.test",
         "-keyout", key, "-out", cert])
    # A key that is not the certificate's: refused, nothing changes.
    bad = config_text(certs, fleet).replace(
        "{ cert: %s, key: %s" % (certs.vm_cert, certs.vm_key),
        "{ cert: %s, key: %s" % (cert, certs.vm_key))
    with open(sgate.cfg_path, "w") as f:
        f.write(bad)
    mark = sgate.mark()
    os.kill(sgate.proc.pid, signal.SIGHUP)
    sgate.wait_log(r"reload_error .*does not match the certificate",
                   since=mark)
    rc, out = s_client(certs, "vm1.vm.test", ["-tls1_3"])
    assert rc == 0 and "ECDSA" in out, out
    # The new certificate and key: served at once after the reload line.
    good = bad.replace("key: %s" % certs.vm_key, "key: %s" % key, 1)
    with open(sgate.cfg_path, "w") as f:
        f.write(good)
    mark = sgate.mark()
    os.kill(sgate.proc.pid, signal.SIGHUP)
    sgate.wait_log(r"INFO reload ", since=mark)
    # A full handshake (no session) is signed with the new P-384 key.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with tls_connect(ctx, "vm1.vm.test", PORT) as s:
        served = s.getpeercert(binary_form=True)
        assert not s.session_reused
    with open(cert) as f:
        assert served == ssl.PEM_cert_to_DER_cert(f.read())
