"""vmgate-signer (issue 14): the private keys live in a separate process.

Runs against the build under test, build/vmgate or $VMGATE_BIN: the
default build has Kconfig KEY_SIGNER=y (make e2e), build/inproc/ has
KEY_SIGNER=n (make e2e-inproc), where vmgate holds the keys itself. Which
one it is comes from the build's config.h and its --version line, which
must agree; build/vmgate must be the signer build (the default). Each
test starts a gate of its own (on a free port) that supervises its own
signer, or uses one the test starts. Tests of the signer itself say so
(needs_signer) and are skipped, saying why, on the in-process build only.

  - ECDSA P-256 and RSA-2048 certificates, TLS 1.2 and 1.3, RSA-PSS and
    RSA PKCS#1: real handshakes (openssl s_client), signed by the signer
    (a capability-less, seccomp'd child that stays the same, running as
    the user vmgate-signer, or where there is none saying that it kept
    the invoking user), or in the in-process build by vmgate, with no
    signer anywhere.
  - The signer SIGKILLed under a load of new handshakes: full handshakes
    fail fast with internal_error (none waits past the bound), TLS 1.2
    resumptions go on throughout, an established stream stays byte-exact,
    and the signer is back (a new pid) with full handshakes working.
    Signer build only.
  - Where the private keys are (/proc/PID/mem over its mappings): with
    the signer, neither key's secret (the EC scalar, an RSA prime) nor its
    PEM text is in vmgate's memory and the same search finds the EC scalar
    in the signer's; in the in-process build it finds it in vmgate's.
  - A reload with a new certificate loads its key (into the signer before
    it is published); one whose key does not match is refused.
  - A superseded key leaves the signer (signer build only; supervised, and
    an external one the test starts): after a certificate swap the old key
    still signs for the handshake timeout and the signer's own (handshakes
    that began on the old store), then leaves (`signer keys_dropped=1`,
    3 s later here): a SIGN for the old key id sent straight to the
    signer's socket is refused (NO_KEY) while the new key and the
    untouched RSA key sign (signatures verified with openssl), and the
    signer's own key count goes 2, 3, back to 2. A reload that fails after
    loading a new key takes that key out again, and no other.
  - Restarts and reconnections load every store vmgate holds, best effort:
    with one key file broken on disk, a killed signer comes back with the
    other key (an ERROR line names the broken file) instead of failing
    every restart.
  - The signer's threads (one per worker; --threads for one run apart)
    share the keys: loaded on one, signing on all, unloaded from all.
  - `vmgate --check` refuses a key file that is not its certificate's key
    (another type, and the same type), though it never starts the signer.
"""

import fcntl
import hashlib
import os
import pwd
import re
import signal
import socket
import ssl
import struct
import subprocess
import termios
import threading
import time

import pytest

from e2e_net import free_ports, run, stop_process
from e2e_util import (wait_until, REPO, Gate, gate_config, recv_all, tcp_sockets,
                      tls_connect)

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


def config_text(certs, fleet, port, signer=None, limits=None):
    # Both names (ECDSA, RSA) reach the echo backend.
    pm = "{ %d: %d }" % (port, ECHO)
    text = gate_config(certs, [("vm1", fleet.addr("vm1"))], ports=[port],
                       port_map=pm, allowed_ports="[%d]" % port,
                       other_port_map=pm, extra_limits=limits)
    if signer:
        text = text.replace("  alpn: [", "  signer: %s\n  alpn: [" % signer, 1)
    return text


def start_gate(certs, fleet, workdir, name, signer=None, limits=None):
    port, = free_ports(1)
    cfg = os.path.join(workdir, name + ".yaml")
    with open(cfg, "w") as f:
        f.write(config_text(certs, fleet, port, signer, limits))
    log = os.path.join(workdir, name + ".log")
    g = Gate(GATE_ARGV, cfg, log, ports=[port], wait_port=port)
    g.port = port
    # A gate of the same name before (the log is appended): its lines are
    # not this one's.
    g.started_at = g.mark()
    g.start(timeout=10)
    return g


@pytest.fixture
def sgate(certs, fleet, workdir, request):
    g = start_gate(certs, fleet, workdir, "signer-%s" % request.node.name)
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


def s_client(port, certs, host, args):
    p = subprocess.run(
        ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port,
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
        # SCHED_BATCH: woken by a request it does not preempt the worker.
        assert os.sched_getscheduler(pid) == os.SCHED_BATCH, \
            os.sched_getscheduler(pid)
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
        rc, out = s_client(sgate.port, certs, host, args)
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
@pytest.mark.timeout(40)
def test_group_sigterm_keeps_the_signer_for_the_drain(sgate, certs):
    """systemd stops a unit with SIGTERM to its whole cgroup, a terminal's
    Ctrl-C reaches the whole process group: the supervised signer must not
    go with that signal while vmgate drains, since a handshake of the drain
    (its connection accepted before the signal) still needs a signature.
    The same signer signs it; it leaves with vmgate, saying so."""
    g = sgate
    pid = signer_pid(g)
    held = tls_connect(certs.client_ctx(), "vm1.vm.test", g.port)
    raw = socket.create_connection(("127.0.0.1", g.port), timeout=10)

    def accepted():
        return all(q == 0 for st, q, _, _, _ in
                   tcp_sockets("sport = :%d" % g.port) if st == "LISTEN")
    wait_until(accepted, 5, what="vmgate accepting the second connection")
    mark = g.mark()
    os.killpg(g.proc.pid, signal.SIGTERM)
    g.wait_log(r"INFO shutdown signal=SIGTERM draining=2\b", since=mark)
    t = certs.client_ctx().wrap_socket(raw, server_hostname="vm1.vm.test")
    t.settimeout(10)
    t.sendall(b"in the drain")
    assert recv_all(t, limit=12) == b"in the drain", g.tail(since=mark)
    assert signer_pid(g) == pid, g.tail(since=mark)
    assert not g.find(r"signer_exit|disconnected", since=mark), \
        g.tail(since=mark)
    t.close()
    held.close()
    assert g.proc.wait(10) == 0, g.tail(since=mark)
    g.wait_log(r"vmgate-signer INFO shutdown signs=\d+ errors=0", since=mark)
    wait_until(lambda: not os.path.exists("/proc/%d" % pid), 5,
               what="the signer gone with vmgate")


@needs_signer
@pytest.mark.timeout(60)
def test_signer_killed_under_load(sgate, certs):
    ctx = certs.client_ctx()
    ctx12 = certs.client_ctx(maxv=ssl.TLSVersion.TLSv1_2)
    host = "vm1.vm.test"
    port = sgate.port
    stream = tls_connect(ctx, host, port)
    echo_check(stream, 65536)
    with tls_connect(ctx12, host, port) as s:
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
                with tls_connect(ctx, host, port, timeout=5) as s:
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
        assert wait_until(lambda: len(results) >= 20, 10), \
            "handshakes before the kill: %d" % len(results)
        killed_at[0] = time.monotonic()
        os.kill(old, signal.SIGKILL)
        # Resumptions sign nothing: they go on while the signer is gone.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with tls_connect(ctx12, host, port, session=session) as s:
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
                with tls_connect(ctx, host, port, timeout=5) as s:
                    echo_check(s, 16)
            except (ssl.SSLError, OSError):
                return False
        return True
    # Every worker's channel is back within its back-off.
    assert wait_until(twenty_full, 5), \
        "no 20 full handshakes in a row within 5 s of the restart"

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
        rc, out = s_client(sgate.port, certs, host, args)
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


def new_vm_cert(d):
    """A new *.vm.test certificate with a new P-384 key in |d|: (cert,
    key) paths."""
    cert, key = os.path.join(d, "new.pem"), os.path.join(d, "new.key")
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:P-384", "-nodes", "-days", "2", "-subj",
         "/CN=*.vm.test", "-addext", "subjectAltName=DNS:*.vm.test",
         "-keyout", key, "-out", cert])
    return cert, key


def refused_reload(g, text):
    """|g| reloads |text|, whose key is not its certificate's: refused.
    Returns the log mark from before the reload."""
    with open(g.cfg_path, "w") as f:
        f.write(text)
    mark = g.mark()
    os.kill(g.proc.pid, signal.SIGHUP)
    g.wait_log(r"reload_error .*does not match the certificate", since=mark)
    return mark


def test_reload_loads_keys_first(sgate, certs, fleet, workdir):
    d = os.path.join(workdir, "signer-reload")
    os.makedirs(d, exist_ok=True)
    cert, key = new_vm_cert(d)
    # A key that is not the certificate's: refused, nothing changes.
    bad = config_text(certs, fleet, sgate.port).replace(
        "{ cert: %s, key: %s" % (certs.vm_cert, certs.vm_key),
        "{ cert: %s, key: %s" % (cert, certs.vm_key))
    refused_reload(sgate, bad)
    rc, out = s_client(sgate.port, certs, "vm1.vm.test", ["-tls1_3"])
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
    with tls_connect(ctx, "vm1.vm.test", sgate.port) as s:
        served = s.getpeercert(binary_form=True)
        assert not s.session_reused
    with open(cert) as f:
        assert served == ssl.PEM_cert_to_DER_cert(f.read())


# -- superseded keys leave the signer

KEYOP_SIGN, KEYOP_ANSWER = 1, 3
STATUS_OK, STATUS_NO_KEY, STATUS_FAILED = 0, 1, 3


def key_id(key_path):
    """signer/keyop.h's key id: the SHA-256 of the public key's DER
    SubjectPublicKeyInfo, its first 8 bytes big-endian."""
    der = subprocess.run(["openssl", "pkey", "-in", key_path, "-pubout",
                          "-outform", "DER"], capture_output=True,
                         check=True).stdout
    return int.from_bytes(hashlib.sha256(der).digest()[:8], "big")


def recv_exact(s, n):
    data = b""
    while len(data) < n:
        got = s.recv(n - len(data))
        assert got, "the signer closed the socket after %d of %d bytes" % (
            len(data), n)
        data += got
    return data


def keyop_sign(sock_path, kid, sigalg, msg, req_id=77):
    """One SIGN frame straight to the signer's socket: (status, signature)."""
    body = struct.pack(">BQQHH", KEYOP_SIGN, req_id, kid, sigalg,
                       len(msg)) + msg
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(sock_path)
        s.sendall(struct.pack(">I", len(body)) + body)
        n, = struct.unpack(">I", recv_exact(s, 4))
        answer = recv_exact(s, n)
    typ, rid, status, out_len = struct.unpack(">BQBH", answer[:12])
    assert typ == KEYOP_ANSWER and rid == req_id, answer[:12]
    assert len(answer) == 12 + out_len
    return status, answer[12:]


def verifies(workdir, key_path, digest, msg, sig):
    """openssl's own verdict on |sig| over |msg| with |key_path|'s public
    key (ECDSA or RSA PKCS#1)."""
    base = os.path.join(workdir, "verify-%s" % os.getpid())
    with open(base + ".msg", "wb") as f:
        f.write(msg)
    with open(base + ".sig", "wb") as f:
        f.write(sig)
    run(["openssl", "pkey", "-in", key_path, "-pubout", "-out",
         base + ".pub"])
    p = subprocess.run(["openssl", "dgst", "-" + digest, "-verify",
                        base + ".pub", "-signature", base + ".sig",
                        base + ".msg"], capture_output=True, text=True)
    return p.returncode == 0 and "Verified OK" in p.stdout


def signer_bin():
    path = os.path.join(os.path.dirname(GATE_ARGV[0]),
                        "vmgate-signer")
    assert os.access(path, os.X_OK), path
    return path


def external_signer(sock, log, *args):
    """A vmgate-signer run apart on |sock|, its lines in |log|."""
    with open(log, "wb") as f:
        return subprocess.Popen([signer_bin(), "--socket", sock, *args],
                                stdout=f, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL,
                                start_new_session=True)


def gate_with_external_signer(certs, fleet, workdir, name):
    """A vmgate-signer run apart and a gate using it (tls.signer), one full
    handshake through them checked: (signer process, gate, socket, the
    signer's log)."""
    sock = os.path.join(workdir, name + ".sock")
    slog = os.path.join(workdir, name + "-signer.log")
    ext = external_signer(sock, slog)
    try:
        assert wait_until(lambda: os.path.exists(sock), 5), read_text(slog)
        g = start_gate(certs, fleet, workdir, name, signer=sock)
    except BaseException:
        stop_process(ext)
        raise
    try:
        rc, out = s_client(g.port, certs, "vm1.vm.test", ["-tls1_3"])
        assert rc == 0, out
    except BaseException:
        g.stop()
        stop_process(ext)
        raise
    return ext, g, sock, slog


def read_text(path):
    with open(path, errors="replace") as f:
        return f.read()


@pytest.fixture(params=["supervised", "external"])
def kgate(request, certs, fleet, workdir):
    """A gate whose signer is its own child, or one the test runs apart
    (tls.signer); .signer_log is where the signer's lines go."""
    name = "signer-keys-%s" % request.param
    ext = None
    sock = None
    slog = os.path.join(workdir, name + "-signer.log")
    if request.param == "external":
        sock = os.path.join(workdir, name + ".sock")
        ext = external_signer(sock, slog)
    g = None
    try:
        if ext:
            assert wait_until(lambda: ext.poll() is not None or
                              os.path.exists(sock), 5), "no socket " + sock
            assert ext.poll() is None, read_text(slog)
        # A short handshake timeout: a freed store's keys stay that long
        # (and the signer's 1 s) before they leave.
        g = start_gate(certs, fleet, workdir, name, signer=sock,
                       limits={"handshake_timeout_ms": 2000})
        if not ext:
            m = re.search(r"socket=(\S+)", g.wait_log(
                r"INFO signer pid=\d+ socket=\S+ keys=2",
                since=g.started_at)[0])
            sock = m.group(1)
            slog = g.log_path
        g.signer_sock, g.signer_log = sock, slog
        yield g
    finally:
        if g:
            g.stop()
        if ext:
            stop_process(ext)


def signer_counts(path):
    """The signer's own key count after each load and unload, from its
    lines: [(event, key_id, keys)]."""
    return [(m.group(1), int(m.group(2), 16), int(m.group(3)))
            for m in re.finditer(r"vmgate-signer INFO (load|unload) "
                                 r"key_id=([0-9a-f]+) .*?keys=(\d+)",
                                 read_text(path))]


def replace_file(path, text):
    """|path| gets |text| in one rename: the gate's file watch sees one
    change (IN_MOVED_TO) and reloads once (a SIGHUP on top of a write
    would reload twice)."""
    with open(path + ".new", "w") as f:
        f.write(text)
    os.rename(path + ".new", path)


def swap_vm_cert(g, certs, d):
    """A new key and certificate for *.vm.test in |d|, and |g|'s
    configuration with them in place of the old ones (not written):
    (cert, key, key id, text)."""
    os.makedirs(d, exist_ok=True)
    cert, key = new_vm_cert(d)
    with open(g.cfg_path) as f:
        text = f.read()
    old = "{ cert: %s, key: %s" % (certs.vm_cert, certs.vm_key)
    assert old in text
    return cert, key, key_id(key), text.replace(
        old, "{ cert: %s, key: %s" % (cert, key))


@needs_signer
def test_superseded_key_leaves_signer(kgate, certs, fleet, workdir):
    g = kgate
    mode = "external" if "external" in g.cfg_path else "supervised"
    old_id, rsa_id = key_id(certs.vm_key), key_id(certs.other_key)
    msg = os.urandom(130)  # a TLS 1.3 CertificateVerify input's size
    # The test's own SIGN reaches the signer: the old key signs.
    st, sig = keyop_sign(g.signer_sock, old_id, 0x0403, msg)
    assert st == STATUS_OK and verifies(workdir, certs.vm_key, "sha256",
                                        msg, sig)
    assert [c[2] for c in signer_counts(g.signer_log)] == [1, 2]

    # The certificate of *.vm.test swapped for one with a new key.
    cert, key, new_id, swapped = swap_vm_cert(
        g, certs, os.path.join(workdir, "signer-keys-" + mode))
    # First a reload that fails after the new key went in (the RSA
    # certificate gets a key not its own): the key it loaded leaves again.
    rsa = "{ cert: %s, key: %s" % (certs.other_cert, certs.other_key)
    assert rsa in swapped
    mark = g.mark()
    replace_file(g.cfg_path, swapped.replace(
        rsa, "{ cert: %s, key: %s" % (certs.other_cert, key)))
    g.wait_log(r"reload_error trigger=file .*does not match the "
               r"certificate", since=mark)
    g.wait_log(r"INFO signer keys_dropped=1 keys=2", since=mark, timeout=15)
    assert keyop_sign(g.signer_sock, new_id, 0x0503, msg)[0] == \
        STATUS_NO_KEY
    assert signer_counts(g.signer_log)[2:] == [("load", new_id, 3),
                                               ("unload", new_id, 2)]
    st, sig = keyop_sign(g.signer_sock, old_id, 0x0403, msg)
    assert st == STATUS_OK, "the failed reload took the live key away"

    mark = g.mark()
    replace_file(g.cfg_path, swapped)
    g.wait_log(r"INFO reload trigger=file", since=mark, timeout=10)
    reloaded = time.monotonic()
    assert g.find(r"INFO reload ", since=mark) == \
        g.find(r"INFO reload trigger=file", since=mark)
    # A handshake that began on the old store may still sign with its
    # key: it stays for the handshake timeout (2 s here) and the signer's
    # own (1 s) after the store is freed, then goes.
    st, sig = keyop_sign(g.signer_sock, old_id, 0x0403, msg)
    assert st == STATUS_OK, "the old key left before the handshakes " \
        "that began on its store were over"
    g.wait_log(r"INFO signer keys_dropped=1 keys=2", since=mark, timeout=15)
    held = time.monotonic() - reloaded
    assert held >= 2.5, "the old key left %.1f s after the reload" % held
    st, sig = keyop_sign(g.signer_sock, old_id, 0x0403, msg)
    assert (st, sig) == (STATUS_NO_KEY, b""), \
        "the superseded key still signs (status %d)" % st
    st, sig = keyop_sign(g.signer_sock, new_id, 0x0503, msg)
    assert st == STATUS_OK and verifies(workdir, key, "sha384", msg, sig)
    st, sig = keyop_sign(g.signer_sock, rsa_id, 0x0401, msg)
    assert st == STATUS_OK and verifies(workdir, certs.other_key, "sha256",
                                        msg, sig)
    # The signer's own count: 2 keys, 3 while both stores lived, 2 again.
    counts = signer_counts(g.signer_log)
    assert counts[4:] == [("load", new_id, 3), ("unload", old_id, 2)], \
        counts
    # And the gate serves the new certificate, signed by the signer.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with tls_connect(ctx, "vm1.vm.test", g.port) as s:
        served = s.getpeercert(binary_form=True)
        echo_check(s, 64)
    with open(cert) as f:
        assert served == ssl.PEM_cert_to_DER_cert(f.read())
    print("%s signer: old key %016x dropped after the swap, counts %s"
          % (mode, old_id, [c[2] for c in counts]))


@needs_signer
@pytest.mark.parametrize("kgate", ["supervised"], indirect=True)
def test_key_superseded_twice_stays_for_the_later_store(kgate, certs, workdir):
    """Two reloads inside a freed store's hold (3 s here: the handshake
    timeout and the signer's 1 s): the first keeps the *.vm.test key (an
    unrelated change), the second replaces it. The key stays until the
    hold of the store the second reload freed is over, not the first's: a
    handshake begun on that store may sign until then. Before, the first
    store's due time took it away."""
    g = kgate
    old_id = key_id(certs.vm_key)
    msg = os.urandom(130)
    with open(g.cfg_path) as f:
        text = f.read()
    mark = g.mark()
    replace_file(g.cfg_path, text + "# an unrelated change\n")
    g.wait_log(r"INFO reload trigger=file", since=mark, timeout=10)
    first = time.monotonic()
    time.sleep(1.5)  # set-up: the second reload well inside the first's hold
    _, _, _, swapped = swap_vm_cert(g, certs, os.path.join(workdir, "signer-twice"))
    mark = g.mark()
    replace_file(g.cfg_path, swapped)
    g.wait_log(r"INFO reload trigger=file", since=mark, timeout=10)
    second = time.monotonic()
    time.sleep(max(0.0, first + 3.6 - time.monotonic()))  # past the first hold
    assert time.monotonic() < second + 2.9, "the second reload came too late"
    st, _ = keyop_sign(g.signer_sock, old_id, 0x0403, msg)
    assert st == STATUS_OK, ("the key left at the first store's hold, before the "
                             "second's", g.tail(since=mark))
    g.wait_log(r"INFO signer keys_dropped=1", since=mark, timeout=15)
    assert keyop_sign(g.signer_sock, old_id, 0x0403, msg)[0] == STATUS_NO_KEY


@needs_signer
def test_restarted_signer_gets_superseded_key(certs, fleet, workdir):
    """A key whose certificate a reload replaced stays in the signer for
    the handshakes begun on the old store; if the signer dies and
    restarts in that time, the new one gets it again (it got only the
    held stores' keys before, and those handshakes failed), and lets it
    go when it is due."""
    g = start_gate(certs, fleet, workdir, "signer-restart-gone",
                   limits={"handshake_timeout_ms": 4000})
    try:
        sock = re.search(r"socket=(\S+)", g.wait_log(
            r"INFO signer pid=\d+ socket=\S+ keys=2", since=0)[0]).group(1)
        old_id = key_id(certs.vm_key)
        msg = os.urandom(130)
        cert, key, new_id, swapped = swap_vm_cert(
            g, certs, os.path.join(workdir, "signer-restart-gone"))
        mark = g.mark()
        replace_file(g.cfg_path, swapped)
        g.wait_log(r"INFO reload trigger=file", since=mark, timeout=10)
        pid = signer_pid(g)
        os.kill(pid, signal.SIGKILL)
        g.wait_log(r"WARN signer_exit signal=9", since=mark)
        g.wait_log(r"INFO signer pid=\d+ socket=\S+ keys=2", since=mark)
        assert signer_pid(g) != pid
        # The restarted signer: the new key, and the superseded one,
        # which a handshake begun before the reload may still ask for.
        st, sig = keyop_sign(sock, new_id, 0x0503, msg)
        assert st == STATUS_OK and verifies(workdir, key, "sha384", msg,
                                            sig)
        st, sig = keyop_sign(sock, old_id, 0x0403, msg)
        assert st == STATUS_OK, "the restarted signer lacks the key of " \
            "the store the reload freed (status %d)" % st
        assert verifies(workdir, certs.vm_key, "sha256", msg, sig)
        # It leaves when due (4 s + the signer's 1 s after the reload).
        g.wait_log(r"INFO signer keys_dropped=1 keys=2", since=mark,
                   timeout=15)
        assert keyop_sign(sock, old_id, 0x0403, msg)[0] == STATUS_NO_KEY
        assert not g.find(r"WARN signer key_id=", since=mark), g.tail()
    finally:
        g.stop()


def test_check_refuses_mismatched_key(certs, fleet, workdir):
    """--check reads the keys itself: the signer build starts no signer
    for it, and accepted any key file before; the in-process build loads
    them as it would to serve."""
    gate = GATE_ARGV
    port, = free_ports(1)
    good = config_text(certs, fleet, port)
    other_ec = os.path.join(workdir, "signer-check-other.key")
    run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
         "ec_paramgen_curve:P-256", "-out", other_ec])
    vm_key = "key: %s" % certs.vm_key
    cases = [("ok", good, None),
             ("rsa-for-ec", good.replace(vm_key, "key: " + certs.other_key),
              certs.other_key),
             ("other-p256", good.replace(vm_key, "key: " + other_ec),
              other_ec)]
    for name, text, bad_key in cases:
        path = os.path.join(workdir, "signer-check-%s.yaml" % name)
        with open(path, "w") as f:
            f.write(text)
        r = subprocess.run(gate + ["--check", "-c", path],
                           capture_output=True, text=True, timeout=10,
                           cwd=REPO)
        out = r.stdout + r.stderr
        if bad_key is None:
            assert r.returncode == 0 and ": ok (" in r.stdout, out
            continue
        assert r.returncode != 0, "%s: --check accepted it:\n%s" % (name, out)
        assert "%s: private key does not match the certificate" % bad_key \
            in r.stderr, out


@needs_signer
def test_external_signer_sched_option(workdir):
    """A signer run apart takes SCHED_BATCH unless told --sched normal,
    says which in its serving line, and refuses any other value."""
    for arg, policy in ((None, os.SCHED_BATCH), ("normal", os.SCHED_OTHER)):
        sock = os.path.join(workdir, "sched-%s.sock" % arg)
        slog = os.path.join(workdir, "sched-%s.log" % arg)
        p = external_signer(sock, slog, *(["--sched", arg] if arg else []))
        try:
            assert wait_until(lambda: "INFO serving" in read_text(slog),
                              5), read_text(slog)
            assert os.sched_getscheduler(p.pid) == policy, \
                (arg, os.sched_getscheduler(p.pid))
            assert re.search(r"vmgate-signer INFO serving pid=%d sched=%s"
                             % (p.pid, arg or "batch"), read_text(slog))
        finally:
            stop_process(p)
    r = subprocess.run([signer_bin(), "--socket",
                        os.path.join(workdir, "sched-bad.sock"),
                        "--sched", "fifo"], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 2, r
    assert "--sched fifo: batch or normal" in r.stderr, r.stderr
    assert not os.path.exists(os.path.join(workdir, "sched-bad.sock"))


# -- one thread per worker

KEYOP_LOAD, KEYOP_UNLOAD = 2, 4


def keyop_call(s, typ, rest, req_id):
    """One frame on open socket |s|, its answer: (status, data)."""
    body = struct.pack(">BQ", typ, req_id) + rest
    s.sendall(struct.pack(">I", len(body)) + body)
    n, = struct.unpack(">I", recv_exact(s, 4))
    answer = recv_exact(s, n)
    t, rid, status, out_len = struct.unpack(">BQBH", answer[:12])
    assert t == KEYOP_ANSWER and rid == req_id, answer[:12]
    return status, answer[12:12 + out_len]


def unix_client(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(path)
    return s


def thread_signs(text):
    """The per-thread signature counts of the signer's shutdown line."""
    m = re.search(r"vmgate-signer INFO shutdown signs=(\d+) errors=\d+ "
                  r"thread_signs=([\d,]+)", text)
    assert m, text[-2000:]
    each = [int(x) for x in m.group(2).split(",")]
    assert sum(each) == int(m.group(1)), m.group(0)
    return each


@needs_signer
def test_signer_threads_share_the_keys(certs, workdir):
    """--threads 2: a new client goes to the thread with the fewest; a key
    LOADed on one thread signs on both (signatures verified), an UNLOAD
    on one takes it from both, and each thread counts its own."""
    sock = os.path.join(workdir, "threads.sock")
    slog = os.path.join(workdir, "threads.log")
    p = external_signer(sock, slog, "--threads", "2")
    clients = []
    try:
        assert wait_until(lambda: "INFO serving" in read_text(slog), 5), \
            read_text(slog)
        assert re.search(r"INFO serving pid=%d sched=batch threads=2"
                         % p.pid, read_text(slog)), read_text(slog)
        kid = key_id(certs.vm_key)
        path = certs.vm_key.encode()
        msg = b"signed on the thread of each client" * 3
        # Thread 0 takes the first client, thread 1 the second.
        clients = [unix_client(sock), None]
        assert keyop_call(clients[0], KEYOP_LOAD,
                          struct.pack(">QH", kid, len(path)) + path,
                          1) == (STATUS_OK, b"")
        clients[1] = unix_client(sock)
        for i, s in ((1, clients[1]), (0, clients[0])):
            st, sig = keyop_call(s, KEYOP_SIGN, struct.pack(
                ">QHH", kid, 0x0403, len(msg)) + msg, 10 + i)
            assert st == STATUS_OK and verifies(
                workdir, certs.vm_key, "sha256", msg, sig), (i, st)
        assert keyop_call(clients[1], KEYOP_UNLOAD, struct.pack(">Q", kid),
                          20) == (STATUS_OK, b"")
        # Gone for thread 0 too, with the context it had made.
        assert keyop_call(clients[0], KEYOP_SIGN, struct.pack(
            ">QHH", kid, 0x0403, len(msg)) + msg, 21)[0] == STATUS_NO_KEY
    finally:
        for s in clients:
            if s:
                s.close()
        stop_process(p)
    assert thread_signs(read_text(slog)) == [2, 1], read_text(slog)
    r = subprocess.run([signer_bin(), "--socket",
                        os.path.join(workdir, "threads-bad.sock"),
                        "--threads", "0"], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 2 and "--threads 0: 1 to 64" in r.stderr, r


@needs_signer
def test_supervised_signer_thread_per_worker(certs, fleet, workdir):
    """vmgate's own signer serves with one thread per worker (2 here), and
    the handshakes of both workers are signed on both threads."""
    g = start_gate(certs, fleet, workdir, "signer-threads")
    try:
        g.wait_log(r"vmgate-signer INFO serving pid=\d+ sched=batch "
                   r"threads=2", since=0)
        # Connections spread over the two workers by the kernel's hash:
        # 40 all on one worker would be a 1 in 2^39 chance.
        for _ in range(40):
            rc, out = s_client(g.port, certs, "vm1.vm.test", ["-tls1_3"])
            assert rc == 0, out
    finally:
        g.stop()
    each = thread_signs(read_text(g.log_path))
    assert len(each) == 2 and min(each) > 0, each


@needs_signer
def test_restart_loads_what_it_can(certs, fleet, workdir):
    """A key file broken on disk since it was loaded (replaced by another
    key, no reload): when the signer dies, vmgate restarts it with every
    other key, names the broken file in an ERROR line, and only that
    certificate's full handshakes fail, where before every restart failed
    and with it every full handshake."""
    d = os.path.join(workdir, "restart-keys")
    os.makedirs(d, exist_ok=True)
    cert, key = new_vm_cert(d)
    port, = free_ports(1)
    cfg = os.path.join(workdir, "restart-keys.yaml")
    text = config_text(certs, fleet, port)
    old = "{ cert: %s, key: %s" % (certs.vm_cert, certs.vm_key)
    assert old in text
    with open(cfg, "w") as f:
        f.write(text.replace(old, "{ cert: %s, key: %s" % (cert, key)))
    g = Gate(GATE_ARGV, cfg, os.path.join(workdir, "restart-keys.log"),
             ports=[port], wait_port=port)
    g.start(timeout=10)
    try:
        g.wait_log(r"INFO signer pid=\d+ socket=\S+ keys=2", since=0)
        pid = signer_pid(g)
        with open(certs.other_key) as f:
            other = f.read()
        with open(key, "w") as f:
            f.write(other)  # not the *.vm.test certificate's key now
        mark = g.mark()
        os.kill(pid, signal.SIGKILL)
        g.wait_log(r"WARN signer_exit signal=9", since=mark)
        g.wait_log(r"WARN signer pid=\d+ socket=\S+ keys=1 failed=1",
                   since=mark)
        assert g.find(r"ERROR signer key_id=[0-9a-f]+ %s: private key does "
                      r"not match the certificate: full handshakes with "
                      r"its certificate fail" % re.escape(key), since=mark)
        assert not g.find(r"restart failed", since=mark), g.tail()
        assert signer_pid(g) != pid
        # The RSA certificate's handshakes are signed again ...
        rc, out = s_client(port, certs, "vm1.other.test", ["-tls1_3"])
        assert rc == 0 and "Verification: OK" in out, out
        # ... the broken one's fail, with internal_error.
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with pytest.raises(ssl.SSLError, match="INTERNAL_ERROR"):
            with tls_connect(ctx, "vm1.vm.test", port):
                pass
    finally:
        g.stop()


@needs_signer
def test_load_refuses_what_would_block(certs, workdir):
    """LOAD of an encrypted key, a FIFO or an oversized file fails at once
    with a line that says why, and the same thread goes on serving: the
    signer runs here with a controlling terminal (as under `make run`),
    where OpenSSL asked for the encrypted key's passphrase on it and the
    thread waited there for good, and opening a FIFO blocked until a
    writer came."""
    sock = os.path.join(workdir, "blocking.sock")
    slog = os.path.join(workdir, "blocking.log")
    enc = os.path.join(workdir, "blocking-enc.key")
    subprocess.run(["openssl", "pkey", "-in", certs.vm_key, "-aes256",
                    "-passout", "pass:secret", "-out", enc], check=True)
    fifo = os.path.join(workdir, "blocking.fifo")
    if os.path.exists(fifo):
        os.unlink(fifo)
    os.mkfifo(fifo)
    big = os.path.join(workdir, "blocking-big.key")
    with open(certs.vm_key, "rb") as f, open(big, "wb") as out:
        out.write(f.read() + b"\n" * (2 << 20))
    master, slave = os.openpty()

    def with_terminal():
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)

    with open(slog, "wb") as f:
        p = subprocess.Popen([signer_bin(), "--socket", sock], stdout=f,
                             stderr=subprocess.STDOUT, stdin=slave,
                             preexec_fn=with_terminal, pass_fds=(slave,))
    os.close(slave)
    s = None
    try:
        assert wait_until(lambda: "INFO serving" in read_text(slog), 5), \
            read_text(slog)
        s = unix_client(sock)
        kid = key_id(certs.vm_key)
        for rid, (path, why) in enumerate((
                (enc, "an encrypted key: give it unencrypted"),
                (fifo, "not a regular file"),
                (big, "larger than 1048576 bytes")), 1):
            b = path.encode()
            t0 = time.monotonic()
            st, _ = keyop_call(s, KEYOP_LOAD,
                               struct.pack(">QH", kid, len(b)) + b, rid)
            assert st == STATUS_FAILED, (path, st)
            assert time.monotonic() - t0 < 2, path
            assert re.search(r"WARN load key_id=%016x path=%s error=\"%s" %
                             (kid, re.escape(path), re.escape(why)),
                             read_text(slog)), read_text(slog)
        # The same client, on the same thread: served.
        b = certs.vm_key.encode()
        assert keyop_call(s, KEYOP_LOAD, struct.pack(">QH", kid, len(b)) + b,
                          10) == (STATUS_OK, b"")
        msg = b"after the refusals"
        st, sig = keyop_call(s, KEYOP_SIGN, struct.pack(
            ">QHH", kid, 0x0403, len(msg)) + msg, 11)
        assert st == STATUS_OK and verifies(workdir, certs.vm_key, "sha256",
                                            msg, sig)
    finally:
        if s:
            s.close()
        stop_process(p)
        os.close(master)
        os.unlink(fifo)


@needs_signer
def test_external_signer_back_during_a_failed_reload(certs, fleet, workdir):
    """An external signer restarted (its keys lost), and a reload that
    fails (a key that is not its certificate's) as soon as it is back,
    before vmgate's next reconnection try (every 200 ms at most): the
    reload's own connection gives the signer every key vmgate holds, as a
    reconnection does, so full handshakes are signed again. Before, that
    connection got the failed store's keys only and, being up, was never
    reconnected: every full handshake failed until a reload succeeded
    (then with a reconnect back-off of up to 5 s, which made the race
    easy to lose)."""
    ext, g, sock, slog = None, None, None, None
    try:
        ext, g, sock, slog = gate_with_external_signer(certs, fleet, workdir,
                                                       "signer-back")
        mark = g.mark()
        ext.kill()
        ext.wait()
        g.wait_log(r"WARN signer worker=\d+ disconnected", since=mark)
        ext = external_signer(sock, slog + ".2")
        assert wait_until(lambda: "INFO serving" in read_text(slog + ".2"),
                          5), read_text(slog + ".2")
        with open(g.cfg_path) as f:
            text = f.read()
        bad = text.replace("key: %s" % certs.vm_key,
                           "key: %s" % certs.other_key, 1)
        assert bad != text
        mark = refused_reload(g, bad)
        # Each worker's own channel comes back within its 100 ms back-off;
        # until then its handshakes fail fast, as with any signer down.
        assert wait_until(lambda: s_client(g.port, certs, "vm1.vm.test",
                                           ["-tls1_3"])[0] == 0, 2), (
            g.tail(since=mark), read_text(slog + ".2"))
    finally:
        if g:
            g.stop()
        if ext:
            stop_process(ext)


class LyingSigner:
    """An external signer that loads anything and answers every SIGN with
    status OK and the bytes of .sig: none, or more than any key's."""

    def __init__(self, path):
        import threading
        self.sig = b""
        self.ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.ls.bind(path)
        self.ls.listen(16)
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        import threading
        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            threading.Thread(target=self.conn, args=(c,), daemon=True).start()

    def conn(self, c):
        try:
            while True:
                n, = struct.unpack(">I", recv_exact(c, 4))
                body = recv_exact(c, n)
                out = self.sig if body[0] == KEYOP_SIGN else b""
                ans = struct.pack(">BQBH", KEYOP_ANSWER,
                                  struct.unpack(">Q", body[1:9])[0], STATUS_OK,
                                  len(out)) + out
                c.sendall(struct.pack(">I", len(ans)) + ans)
        except (AssertionError, OSError):
            c.close()

    def close(self):
        self.ls.close()


@needs_signer
def test_signature_of_a_wrong_length_is_the_signers_failure(certs, fleet, workdir):
    """A signer that answers OK with no signature, or with one longer than
    any of the key's: the client gets the internal_error alert and the
    close line blames the signer, as for any signer failure. Before, an
    empty one went to the client as an empty CertificateVerify (its
    decode_error blamed on the client), and a long one failed the
    handshake with BoringSSL's generic reason and no alert."""
    name = "signer-lies"
    sock = os.path.join(workdir, name + ".sock")
    fake = LyingSigner(sock)
    g = None
    try:
        g = start_gate(certs, fleet, workdir, name, signer=sock)
        for sig in (b"", b"\x30" * 500):
            fake.sig = sig
            mark = g.mark()
            rc, out = s_client(g.port, certs, "vm1.vm.test", ["-tls1_3"])
            assert rc != 0 and "internal error" in out, (len(sig), out)
            g.wait_log(r'reason=tls_error detail="signer: a signature of a '
                       r'wrong length"', since=mark)
    finally:
        if g:
            g.stop()
        fake.close()


@needs_signer
def test_stopped_external_signer_fails_handshakes_at_once(certs, fleet, workdir):
    """An external signer stopped (SIGSTOP: its socket open, answering
    nothing), which vmgate cannot restart: once a request has waited out
    the signer's deadline (1 s), the worker's channel is reset and later
    full handshakes fail at once ("signer: not answering") instead of each
    waiting that second; each reconnection sends a probe, and the first
    answer after SIGCONT has them signed again. Before, every full
    handshake waited out the second."""
    ext, g = None, None
    try:
        ext, g, _, _ = gate_with_external_signer(certs, fleet, workdir, "signer-stopped")
        mark = g.mark()
        os.kill(ext.pid, signal.SIGSTOP)
        took = []
        for _ in range(6):
            t0 = time.monotonic()
            rc, out = s_client(g.port, certs, "vm1.vm.test", ["-tls1_3"])
            took.append(time.monotonic() - t0)
            assert rc != 0, out
        g.wait_log(r"reason=tls_error detail=\"signer: not answering\"", since=mark)
        # Two workers: each has its first request wait the second out.
        slow = [t for t in took if t > 0.7]
        assert len(slow) <= 2, took
        os.kill(ext.pid, signal.SIGCONT)
        assert wait_until(lambda: s_client(g.port, certs, "vm1.vm.test",
                                           ["-tls1_3"])[0] == 0, 5), g.tail(since=mark)
    finally:
        if ext:
            try:
                os.kill(ext.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        if g:
            g.stop()
        if ext:
            stop_process(ext)


@needs_signer
def test_stopped_signer_is_replaced(sgate, certs):
    """vmgate's own signer stopped (SIGSTOP: alive, answering nothing):
    vmgate asks it once a second, kills it when an answer has not come in
    3 s, and restarts it as one that died; full handshakes are signed
    again. Before, it stayed stopped, and every full handshake failed
    after the signer's wait for as long as it did."""
    g = sgate
    pid = signer_pid(g)
    mark = g.mark()
    os.kill(pid, signal.SIGSTOP)
    try:
        g.wait_log(r"ERROR signer pid=%d did not answer in 3000 ms: "
                   r"killed, to be restarted" % pid, since=mark, timeout=10)
        g.wait_log(r"WARN signer_exit signal=9 ", since=mark, timeout=3)
        g.wait_log(r"INFO signer pid=\d+ socket=\S+ keys=", since=mark,
                   timeout=5)
        assert signer_pid(g) != pid
        assert wait_until(lambda: s_client(g.port, certs, "vm1.vm.test",
                                           ["-tls1_3"])[0] == 0, 3), \
            g.tail(since=mark)
    finally:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
