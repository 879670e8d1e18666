"""A ClientHello whose signature_algorithms the name's certificate cannot
sign in is refused from the raw hello, before any ServerHello, with the
alert BoringSSL would send after it (handshake_failure, 40); a name with
an ECDSA and an RSA certificate serves each client the one it can verify.

BoringSSL's rules (tls/sigalg.h): in TLS 1.3 an ECDSA P-256 key signs only
ecdsa_secp256r1_sha256 and an RSA key only rsa_pss_rsae_*; in TLS 1.2 an
ECDSA key signs any ecdsa_* BoringSSL knows (SHA-1 included) and an RSA
key rsa_pkcs1_* too. ecdsa_sha224 is never signed. In TLS 1.2 the client
must also offer a cipher suite for the key's type and, for an ECDSA key,
its curve among supported_groups.

The shared gate's *.vm.test certificate is ECDSA P-256. The dual-name gate
(on a free port) has an ECDSA and an RSA certificate for *.vm.test, both from
the harness CA.
"""
import os
import re
import socket
import ssl
import subprocess

import pytest

from e2e_net import free_ports
from e2e_util import (Gate, Hello, echo_roundtrip, server_flight_in, gate_config,
                      gate_metric, peer_re, plaintext_alerts, read_answer)

HANDSHAKE_FAILURE = 40
REJECTS = 'vmgate_rejects_total{reason="no_common_sigalg"}'

ECDSA_SHA1 = [0x0203]
ECDSA_SHA224 = [0x0303]
RSA_ONLY = [0x0804, 0x0805, 0x0806, 0x0401, 0x0501, 0x0601, 0x0201]


def reject_count(gate):
    """vmgate_rejects_total{reason="no_common_sigalg"}; None if absent."""
    return gate_metric(gate, REJECTS)


def with_sigalgs(hello, schemes):
    """|hello| with signature_algorithms offering exactly |schemes|."""
    lst = b"".join(s.to_bytes(2, "big") for s in schemes)
    return hello.put(13, len(lst).to_bytes(2, "big") + lst)


def send_hello(port, hello):
    """-> (bytes answered, how the connection ended, our local port)"""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    lport = s.getsockname()[1]
    s.sendall(hello.records())
    # After a ServerHello the gate waits for the client's next flight.
    data, how = read_answer(s, timeout=5, done=server_flight_in)
    s.close()
    return data, how, lport


def is_server_hello(data):
    return data[:1] == b"\x16" and data[5:6] == b"\x02"


REFUSED = [
    ("tls13-ecdsa_sha1", None, ECDSA_SHA1),
    ("tls13-ecdsa_sha224", None, ECDSA_SHA224),
    ("tls13-rsa-only", None, RSA_ONLY),
    ("tls13-other-curves", None, [0x0503, 0x0603]),
    ("tls12-ecdsa_sha224", ssl.TLSVersion.TLSv1_2, ECDSA_SHA224),
    ("tls12-rsa-only", ssl.TLSVersion.TLSv1_2, RSA_ONLY),
]


@pytest.mark.parametrize("what,maxv,schemes", REFUSED, ids=[r[0] for r in REFUSED])
def test_no_common_sigalg_refused_before_server_hello(live_gate, certs, what, maxv,
                                                      schemes):
    g = live_gate
    before = reject_count(g)
    mark = g.mark()
    data, how, lport = send_hello(8080, with_sigalgs(Hello(maxv=maxv), schemes))
    # One plaintext alert, nothing else: no ServerHello went out.
    assert not is_server_hello(data), ("a ServerHello was sent", how, data[:64])
    assert plaintext_alerts(data) == [(2, HANDSHAKE_FAILURE)], (
        "expected one fatal handshake_failure alert", how, data[:64],
        g.tail(since=mark))
    assert len(data) == 7, data
    g.wait_log(r"WARN reject .*%s.*sni=vm1\.vm\.test.*reason=no_common_sigalg\b"
               % peer_re(lport), timeout=5, since=mark)
    assert before is not None and reject_count(g) >= before + 1
    # The gate still serves a client that can verify ECDSA.
    assert echo_roundtrip(certs, port=8080) < 3


ACCEPTED = [
    # TLS 1.2 lets an ECDSA P-256 key sign ecdsa_sha1, and other curves'
    # hashes: BoringSSL goes on, and so does the router.
    ("tls12-ecdsa_sha1", ssl.TLSVersion.TLSv1_2, ECDSA_SHA1),
    ("tls12-ecdsa_sha384", ssl.TLSVersion.TLSv1_2, [0x0503]),
    # The usable scheme last, behind ones the key cannot make.
    ("tls13-p256-last", None, RSA_ONLY + ECDSA_SHA1 + [0x0403]),
]


@pytest.mark.parametrize("what,maxv,schemes", ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_signable_hello_gets_server_hello(live_gate, what, maxv, schemes):
    data, how, _ = send_hello(8080, with_sigalgs(Hello(maxv=maxv), schemes))
    assert is_server_hello(data), ("expected a ServerHello", how, data[:64])


def test_tls13_without_sigalgs_left_to_boringssl(live_gate):
    """A TLS 1.3 hello without signature_algorithms could resume from a
    pre_shared_key, which needs no signature: the router does not refuse
    it, and BoringSSL decides (a full handshake fails there). A guard on
    that choice; it passes on the old code too."""
    g = live_gate
    mark = g.mark()
    data, how, lport = send_hello(8080, Hello().drop(13))
    g.wait_log(r"%s.*tls_error" % peer_re(lport), timeout=5, since=mark)
    assert not g.find(r"WARN reject .*%s" % peer_re(lport), since=mark), (
        g.tail(since=mark))


# ------------------------------------------------------- two certificates

@pytest.fixture
def dual_gate(gate_bin, certs, fleet, workdir):
    """A gate whose *.vm.test has an ECDSA certificate (first) and an RSA
    one (second), and *.other.test the harness's RSA one."""
    rsa_cert = os.path.join(certs.dir, "vm.test-rsa.pem")
    rsa_key = os.path.join(certs.dir, "vm.test-rsa.key")
    if not os.path.exists(rsa_cert):
        certs._leaf(rsa_cert, rsa_key, "*.vm.test", ["-newkey", "rsa:2048"])
    port = free_ports(1)[0]
    text = gate_config(certs, [("vm1", fleet.addr("vm1"))], ports=[port],
                       port_map="{ %d: 8080 }" % port,
                       allowed_ports="[%d]" % port,
                       admin_unix=os.path.join(workdir, "dualcert.admin.sock"))
    ecdsa_line = "    - { cert: %s, key: %s }" % (certs.vm_cert, certs.vm_key)
    assert ecdsa_line in text
    text = text.replace(ecdsa_line, ecdsa_line + "\n    - { cert: %s, key: %s }"
                        % (rsa_cert, rsa_key))
    cfg = os.path.join(workdir, "dualcert.yaml")
    with open(cfg, "w") as f:
        f.write(text)
    g = Gate(gate_bin, cfg, os.path.join(workdir, "dualcert.log"),
             ports=[port], wait_port=port)
    g.port = port
    g.start(timeout=10)
    yield g
    g.stop()


def s_client(certs, port, *args):
    """openssl s_client to vm1.vm.test through the gate, verifying the chain
    and the name; -> its output (the handshake must succeed)."""
    p = subprocess.run(
        ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port,
         "-servername", "vm1.vm.test", "-verify_hostname", "vm1.vm.test",
         "-CAfile", certs.ca, "-verify_return_error", "-brief"] + list(args),
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20)
    out = p.stdout + p.stderr
    assert "CONNECTION ESTABLISHED" in out and "Verification: OK" in out, out
    return out


def peer_key(out):
    m = re.search(r"^Peer certificate: .*$", out, re.M)
    sig = re.search(r"^(?:Peer )?[Ss]ignature type: (\S+)", out, re.M)
    assert m and sig, out
    return sig.group(1)


DUAL = [
    ("tls13-rsa-pss", ["-tls1_3", "-sigalgs", "rsa_pss_rsae_sha256"], "RSA-PSS"),
    ("tls13-ecdsa", ["-tls1_3", "-sigalgs", "ecdsa_secp256r1_sha256"], "ECDSA"),
    ("tls13-both-ecdsa-first-in-config", ["-tls1_3", "-sigalgs",
                                          "rsa_pss_rsae_sha256:ecdsa_secp256r1_sha256"],
     "ECDSA"),
    ("tls12-rsa-pkcs1", ["-tls1_2", "-sigalgs", "RSA+SHA256"], "RSA"),
    # TLS 1.2 also needs a cipher suite for the key: a client offering
    # only ECDHE-RSA suites (and ECDSA signatures too) gets the RSA one
    ("tls12-rsa-suites-only", ["-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"],
     "RSA-PSS"),
    ("tls12-ecdsa-suites-only", ["-tls1_2", "-cipher",
                                 "ECDHE-ECDSA-AES128-GCM-SHA256"], "ECDSA"),
    # and an ECDSA key's curve among the client's groups
    ("tls12-no-p256-group", ["-tls1_2", "-groups", "X25519:P-384"], "RSA-PSS"),
]


@pytest.mark.parametrize("what,args,want", DUAL, ids=[d[0] for d in DUAL])
def test_two_certificates_for_one_name(dual_gate, certs, what, args, want):
    out = s_client(certs, dual_gate.port, *args)
    assert peer_key(out) == want, out


def test_two_certificates_refuse_what_neither_signs(dual_gate):
    g = dual_gate
    mark = g.mark()
    data, how, lport = send_hello(g.port, with_sigalgs(Hello(), ECDSA_SHA224))
    assert plaintext_alerts(data) == [(2, HANDSHAKE_FAILURE)] and len(data) == 7, (
        how, data[:64], g.tail(since=mark))
    g.wait_log(r"WARN reject .*%s.*reason=no_common_sigalg\b" % peer_re(lport),
               timeout=5, since=mark)
    # An RSA-only raw hello is answered (by the RSA certificate).
    data, how, _ = send_hello(g.port, with_sigalgs(Hello(), RSA_ONLY))
    assert is_server_hello(data), (how, data[:64], g.tail(since=mark))
