"""13. `vmgate --check -c FILE`: a valid file passes; an invalid one fails
with FILE:LINE:COL: message at the right line, and vmgate will not start.
A key file that is not its certificate's key fails in either build (with
Kconfig KEY_SIGNER --check reads the keys itself: test_signer.py)."""

import os
import re
import shutil
import subprocess
import tempfile

import pytest

from e2e_util import REPO


@pytest.fixture(scope="module")
def real_bin(gate_bin):
    if "mockgate" in " ".join(gate_bin):
        pytest.skip("the mock gate does not implement --check")
    return gate_bin


def check(argv, path, timeout=10):
    return subprocess.run(argv + ["--check", "-c", path], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def test_check_valid(real_bin, gate_config_path):
    r = check(real_bin, gate_config_path)
    assert r.returncode == 0, r


def test_check_shipped_appliance_yaml(real_bin):
    """The appliance.yaml in the repo loads (its demo cert may be absent:
    then only a missing-file error is acceptable)."""
    path = os.path.join(REPO, "appliance.yaml")
    r = check(real_bin, path)
    if r.returncode != 0:
        out = r.stdout + r.stderr
        errs = [l for l in out.splitlines() if re.match(re.escape(path) + r":\d+:\d+: ", l)]
        assert errs and all("build/demo" in l or "No such file" in l or "readable" in l
                            or "cannot" in l.lower() for l in errs), out


def mutate(src, pattern, repl):
    """Apply one regex substitution; return (text, 1-based line it hit)."""
    lines = src.splitlines(keepends=True)
    for i, l in enumerate(lines):
        if re.search(pattern, l):
            lines[i] = re.sub(pattern, repl, l, count=1)
            return "".join(lines), i + 1
    raise AssertionError("pattern %r not in config" % pattern)


BAD = [
    ("bad-ipv6", r'address: "fd00:[0-9a-f]+::2"', 'address: "fd00::zz::2"'),
    ("unknown-key", r"^log_level: debug", "log_levle: debug"),
    ("port-out-of-range", r"ports: \[443,", "ports: [70000,"),
    ("bad-log-level", r"^log_level: debug", "log_level: loud"),
    ("bad-vm-id", r"- \{ id: vm2,", "- { id: vm_2!,"),
]


@pytest.mark.parametrize("name,pattern,repl", BAD, ids=[b[0] for b in BAD])
def test_check_invalid(real_bin, gate_config_path, workdir, name, pattern, repl):
    with open(gate_config_path) as f:
        text, line = mutate(f.read(), pattern, repl)
    bad = os.path.join(workdir, "bad-%s.yaml" % name)
    with open(bad, "w") as f:
        f.write(text)
    r = check(real_bin, bad)
    out = r.stdout + r.stderr
    assert r.returncode != 0, ("--check accepted an invalid config", out)
    m = re.search(r"^%s:(\d+):(\d+): (.+)$" % re.escape(bad), out, re.M)
    assert m, ("no FILE:LINE:COL: message in the output", out)
    assert int(m.group(1)) == line, ("error at line %s, the mistake is on line %d"
                                     % (m.group(1), line), out)
    assert int(m.group(2)) >= 1
    # and it refuses to start with it (exits by itself, quickly)
    try:
        r2 = subprocess.run(real_bin + ["-c", bad], capture_output=True, text=True,
                            timeout=5, cwd=REPO)
    except subprocess.TimeoutExpired:
        raise AssertionError("vmgate started with an invalid config (%s)" % name)
    assert r2.returncode != 0, r2
    assert re.search(r"%s:%d:\d+: " % (re.escape(bad), line), r2.stdout + r2.stderr), r2


def test_check_missing_file(real_bin, workdir):
    r = check(real_bin, os.path.join(workdir, "does-not-exist.yaml"))
    assert r.returncode != 0, r


def test_check_key_not_the_certificates(real_bin, gate_config_path, certs,
                                        workdir):
    with open(gate_config_path) as f:
        text = f.read()
    vm_key = "key: %s" % certs.vm_key
    assert vm_key in text
    bad = os.path.join(workdir, "bad-key-pair.yaml")
    with open(bad, "w") as f:
        f.write(text.replace(vm_key, "key: %s" % certs.other_key))
    r = check(real_bin, bad)
    assert r.returncode != 0, ("--check accepted a mismatched key", r)
    assert ("%s: private key does not match the certificate" % certs.other_key
            in r.stderr), r
    # where in the file, as every configuration error says it
    line = text[:text.index(vm_key)].count("\n") + 1
    assert re.search(r"%s:%d:\d+: %s: private key does not match" % (
        re.escape(bad), line, re.escape(certs.other_key)), r.stderr), r.stderr


@pytest.mark.parametrize("signer", [True, False], ids=["tls.signer", "no-signer"])
def test_check_key_unreadable_by_vmgate(real_bin, certs, signer):
    """A key file vmgate's user cannot read: with tls.signer that is how
    it should be (the external signer opens it by path as its own user, as
    the Debian package's vmgate-signer.service does), so the file loads and
    --check leaves that key to the signer, saying so; without it (or in a
    build without the signer) it is an error at the key's line."""
    keys = "keys=signer" in subprocess.run(real_bin + ["--version"], capture_output=True,
                                           text=True, timeout=10).stdout
    d = tempfile.mkdtemp(prefix="vmgate-check-")
    try:
        os.chmod(d, 0o755)
        shutil.copyfile(certs.vm_cert, os.path.join(d, "cert.pem"))
        shutil.copyfile(certs.vm_key, os.path.join(d, "key.pem"))
        os.chmod(os.path.join(d, "cert.pem"), 0o644)
        os.chmod(os.path.join(d, "key.pem"), 0o600)  # root's only
        path = os.path.join(d, "appliance.yaml")
        with open(path, "w") as f:
            f.write('listen:\n  address: "::"\n  ports: [443]\n'
                    "tls:\n  certificates:\n    - { cert: cert.pem, key: key.pem }\n" +
                    ("  signer: /run/vmgate-signer/signer.sock\n" if signer else "") +
                    "domains:\n  - suffix: vm.test\n"
                    'vms:\n  - { id: vm1, address: "fd00::1" }\n')
        os.chmod(path, 0o644)
        r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] +
                           real_bin + ["--check", "-c", path],
                           capture_output=True, text=True, timeout=10, cwd="/")
        key = os.path.join(d, "key.pem")
        if signer and keys:
            assert r.returncode == 0, r
            assert ("%s: not readable by this user: the signer (tls.signer "
                    "/run/vmgate-signer/signer.sock) checks it" % key) in r.stdout, r
        else:
            assert r.returncode == 1, r
            assert "%s:6:30: key file '%s': Permission denied" % (path, key) in r.stderr, r
        # root reads it: checked as before, no note
        r = subprocess.run(real_bin + ["--check", "-c", path], capture_output=True,
                           text=True, timeout=10)
        assert r.returncode == 0 and "not readable" not in r.stdout, r
    finally:
        shutil.rmtree(d)
