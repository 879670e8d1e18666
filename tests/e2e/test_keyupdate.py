"""KeyUpdate in the middle of a relay, from a BoringSSL client (kuclient.c)
that puts data and KeyUpdate records where the test says and sends them in
one TCP segment or in small pieces.

Every data byte must reach the VM (vm1's echo on 8080) in order and come
back, and a KeyUpdate with update_requested must be answered, whatever the
records around it: several KeyUpdates in a row, one as the very first
record after the handshake (in the segment that carries the client's
Finished), and records already buffered behind a KeyUpdate that BoringSSL
consumes without returning data.
"""
import os
import re
import subprocess

import pytest

from e2e_util import REPO

PORT = 8080          # vm1: echo
HOST = "vm1.vm.test"
KUCLIENT = os.environ.get("VMGATE_KUCLIENT",
                          os.path.join(REPO, "build", "tests", "kuclient"))



def run(certs, script, chunk=0):
    assert os.access(KUCLIENT, os.X_OK), (
        "%s missing: `make e2e` builds it (tests/e2e/kuclient.c)" % KUCLIENT)
    p = subprocess.run([KUCLIENT, str(PORT), HOST, certs.ca, script, str(chunk)],
                       capture_output=True, text=True, timeout=30)
    m = re.search(r"echoed=(\d+) keyupdates_received=(\d+)", p.stdout)
    assert p.returncode == 0 and m, (script, chunk, p.returncode, p.stdout, p.stderr)
    words = [w for w in script.lstrip("@").split(",") if w not in ("K", "k")]
    assert int(m.group(1)) == sum(int(w[1:]) if w.startswith("=") else len(w)
                                  for w in words)
    return int(m.group(2))


SCRIPTS = [
    "K",                                 # the VM never speaks: answered anyway
    "@K",                                # ... as the first record after Finished
    "k,k,K",
    "before,K,after",                    # requested, one segment
    "before,k,after",                    # not requested
    "one,K,k,K,two,k,three",             # several in a row, interleaved
    "a,k,k,k,k,k,k,k,k,b",               # a run of eight
    "@K,first-after-handshake",          # first record after the handshake
    "@k,x,K,y",                          # ... without request, then one with
    "head,=20000,K,=20000,tail",         # behind and before full records
    # More than the relay buffers toward the VM (limits.buffer_bytes):
    # the KeyUpdate and the data behind it wait in the TLS input while
    # reading pauses, and must be taken up when it resumes.
    "=1500000,K,=1500000",
    "=1500000,k,k,tail",
]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda s: s[:30])
@pytest.mark.parametrize("chunk", [0, 7, 1500])
def test_keyupdate_in_stream(live_gate, certs, script, chunk):
    """|chunk| 0: everything in one send; else that many bytes per send."""
    answered = run(certs, script, chunk)
    if "K" in script.lstrip("@").split(","):
        assert answered >= 1, "update_requested was not answered"
    else:
        assert answered == 0, "a KeyUpdate came back that nobody requested"
