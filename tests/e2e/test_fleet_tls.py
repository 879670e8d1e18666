"""Fleet mode over https: etcd with TLS on, a server certificate for
[::1] (an IP subjectAltName) and client certificates required.

The module makes two CAs with openssl (the test's own, and a stranger's),
a server certificate for [::1] and a client certificate from the first,
and one from the stranger; it starts a single-member etcd-server 3.4 with
--cert-file/--key-file, --client-cert-auth and --trusted-ca-file on free
ports, its data under the test's temporary directory, stopped by PID at
the end. Appliances are the fleet tests' FleetGate with an
https://[::1]:PORT endpoint; "routed" is an echo round trip through one to
the session's simulated VM vm1, as in test_fleet.py.
"""

import os

import pytest

from e2e_net import run
from e2e_util import wait_until
from test_fleet import EtcdCluster, EtcdTLS, FleetGate, PREFIX

# Fleet mode is control plane (etcd, the fleet and admin threads): what it
# checks is the same in every socket mode and key path, so the runs of
# the suite after `make e2e` leave it out (E2E_AGAIN: -m 'not once').
pytestmark = pytest.mark.once


def make_ca(d, name):
    key, cert = os.path.join(d, name + ".key"), os.path.join(d, name + ".pem")
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:P-256", "-nodes", "-days", "30",
         "-subj", "/CN=vmgate e2e %s" % name, "-keyout", key, "-out", cert,
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
    return cert, key


def make_leaf(d, name, ca, subj, ext):
    key, cert = os.path.join(d, name + ".key"), os.path.join(d, name + ".pem")
    csr, extf = cert + ".csr", cert + ".ext"
    run(["openssl", "req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:P-256", "-subj", subj, "-keyout", key, "-out", csr])
    with open(extf, "w") as f:
        f.write("basicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature\n" + ext)
    run(["openssl", "x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1],
         "-CAcreateserial", "-days", "30", "-out", cert, "-extfile", extf])
    return cert, key


class PKI:
    def __init__(self, d):
        os.makedirs(d, exist_ok=True)
        self.ca = make_ca(d, "etcd-ca")
        self.other_ca = make_ca(d, "other-ca")
        # clientAuth too: etcd 3.4's HTTP gateway dials its own gRPC
        # server presenting this certificate.
        self.server = make_leaf(d, "etcd-server", self.ca, "/CN=etcd [::1]",
                                "subjectAltName=IP:::1\n"
                                "extendedKeyUsage=serverAuth,clientAuth\n")
        self.client = make_leaf(d, "edge-client", self.ca, "/CN=vmgate-edge",
                                "extendedKeyUsage=clientAuth\n")
        self.stranger = make_leaf(d, "stranger", self.other_ca, "/CN=stranger",
                                  "extendedKeyUsage=clientAuth\n")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return PKI(str(tmp_path_factory.mktemp("etcd-pki")))


@pytest.fixture(scope="module")
def etcd_tls(pki, tmp_path_factory):
    tls = EtcdTLS(pki.ca[0], *pki.server, client_ca=pki.ca[0],
                  client_cert=pki.client[0], client_key=pki.client[1])
    with EtcdCluster(str(tmp_path_factory.mktemp("etcd-tls")), n=1,
                     host="[::1]", tls=tls) as c:
        yield c


def tls_lines(ca=None, cert=None):
    out = []
    if ca:
        out.append("    ca_file: %s" % ca)
    if cert:
        out += ["    cert_file: %s" % cert[0], "    key_file: %s" % cert[1]]
    return out


def health(g):
    st, h = g.api("GET", "/health")
    assert st == 200, (st, h)
    return h


def put_ctl(c, vid, addr, user=None):
    """A VM put with etcdctl over TLS (its own CA and client flags)."""
    r = c.ctl("put", PREFIX + "vms/" + vid, '{"address": "%s"}' % addr, user=user)
    assert r.returncode == 0, (r.stdout, r.stderr)


def down_error(g):
    """/health's fleet error once it says etcd is not up."""
    h = wait_until(lambda: (lambda f: f if f["error"] and not f["etcd_up"]
                            else None)(health(g)["fleet"]), 10, step=0.1,
                   what="/health: etcd not up, with an error")
    return h["error"]


def test_https_client_cert_routed(etcd_tls, pki, gate_bin, certs, vm1, tmp_path):
    ep = etcd_tls.members[0].url
    assert ep.startswith("https://[::1]:"), ep
    # etcd does require a client certificate: without one it refuses.
    r = run(["curl", "-sS", "--cacert", pki.ca[0], "-X", "POST",
             "-d", "{}", ep + "/v3/maintenance/status"], check=False)
    assert r.returncode != 0, r.stdout
    put_ctl(etcd_tls, "tls1", vm1)
    g = FleetGate(gate_bin, str(tmp_path / "ok"), certs, etcd_tls, "edge-tls",
                  etcd_extra=tls_lines(pki.ca[0], pki.client))
    g.start()
    try:
        wait_until(lambda: g.routes("tls1"), 10, step=0.1,
                   what="VM from etcd over https routed")
        wait_until(lambda: g.fleet_status()["watch"] == "watching", 10,
                   what="watching over https")
        # A put while the watch runs arrives through it.
        put_ctl(etcd_tls, "tls2", vm1)
        wait_until(lambda: g.routes("tls2"), 5, step=0.05,
                   what="VM put during the https watch routed")
        h = health(g)
        assert h["fleet"]["etcd_up"] is True and h["fleet"]["error"] == "", h
        assert g.fleet_status()["endpoint"] == ep
        assert not g.routes("nosuchvm")
    finally:
        g.stop()


@pytest.mark.parametrize("start", ["fresh", "snapshot"])
def test_wrong_ca_not_up_names_certificate(etcd_tls, pki, gate_bin, certs, vm1,
                                           tmp_path, start):
    """ca_file of another CA. Fresh, the appliance's first request (the
    full read) fails; from a snapshot (an appliance restarted after its CA
    file changed) its watch does: both say why."""
    d = str(tmp_path / "wrongca")
    if start == "snapshot":
        put_ctl(etcd_tls, "snapvm", vm1)
        g = FleetGate(gate_bin, d, certs, etcd_tls, "edge-wrongca",
                      etcd_extra=tls_lines(pki.ca[0], pki.client))
        g.start()
        try:
            wait_until(lambda: os.path.exists(g.snapshot) and
                       "snapvm" in open(g.snapshot).read(), 10, step=0.1,
                       what="snapshot written")
        finally:
            g.stop()
    g = FleetGate(gate_bin, d, certs, etcd_tls, "edge-wrongca",
                  file_vms=[("filevm", vm1)],
                  etcd_extra=tls_lines(pki.other_ca[0], pki.client))
    since = g.mark()
    g.start()
    try:
        # The file's VMs (and the snapshot's) are served whatever etcd says.
        assert g.routes("filevm", timeout=5)
        if start == "snapshot":
            assert g.routes("snapvm", timeout=5)
        err = down_error(g)
        print("wrong CA, %s: %s" % (start, err))
        assert "certificate verification failed" in err, err
        assert etcd_tls.members[0].url in err, err
        if start == "snapshot":
            assert err.startswith("watch on "), err
        assert health(g)["status"] == "ok"
        assert g.find(r'WARN fleet_down error=".*certificate verification failed',
                      since=since)
        assert g.routes("filevm")
    finally:
        g.stop()


@pytest.mark.parametrize("cert", ["none", "stranger"])
def test_client_cert_missing_or_unknown_not_up(etcd_tls, pki, gate_bin, certs, vm1,
                                               tmp_path, cert):
    leaf = {"none": None, "stranger": pki.stranger}[cert]
    g = FleetGate(gate_bin, str(tmp_path / cert), certs, etcd_tls, "edge-" + cert,
                  file_vms=[("filevm", vm1)],
                  etcd_extra=tls_lines(pki.ca[0], leaf))
    g.start()
    try:
        assert g.routes("filevm", timeout=5)
        err = down_error(g)
        print("client certificate %s: %s" % (cert, err))
        assert etcd_tls.members[0].url in err, err
        assert "unreachable" not in err, err
        want = {"none": "it may want a client certificate (none configured: "
                        "fleet.etcd.cert_file)",
                "stranger": "it may not accept the client certificate"}[cert]
        assert "etcd closed the TLS connection: " + want in err, err
        assert g.fleet_status()["etcd_vms"] == 0
    finally:
        g.stop()


def test_https_username_password(pki, gate_bin, certs, vm1, tmp_path):
    """etcd over https (server certificate only) with authentication on:
    the appliance logs in with its password and routes what is put."""
    prefix = "/auth-tls-e2e/"
    c = EtcdCluster(str(tmp_path / "etcd"), n=1, host="[::1]",
                    tls=EtcdTLS(pki.ca[0], *pki.server))

    def ctl(*args, user="root:rootpw"):
        r = c.ctl(*args, user=user)
        assert r.returncode == 0, (args, r.stdout, r.stderr)

    try:
        c.start_all()
        for args in (("user", "add", "root:rootpw"), ("role", "add", "edge"),
                     ("role", "grant-permission", "edge", "--prefix=true",
                      "readwrite", prefix),
                     ("user", "add", "edge:tls-pw"), ("user", "grant-role", "edge", "edge"),
                     ("auth", "enable")):
            ctl(*args, user=None)
        pw = tmp_path / "etcd.password"
        pw.write_text("tls-pw\n")
        ctl("put", prefix + "vms/tlsau1", '{"address": "%s"}' % vm1)
        g = FleetGate(gate_bin, str(tmp_path / "g"), certs, c, "edge-tlsauth",
                      prefix=prefix,
                      etcd_extra=tls_lines(pki.ca[0]) +
                      ["    username: edge", "    password_file: %s" % pw])
        g.start()
        try:
            wait_until(lambda: g.routes("tlsau1"), 10, step=0.1,
                       what="routed over https with a password")
            st, j = g.api("PUT", "/vms/tlsau2", {"address": vm1})
            assert st == 201, (st, j)
            wait_until(lambda: g.routes("tlsau2"), 5, what="admin PUT routed")
            assert health(g)["fleet"]["etcd_up"] is True
        finally:
            g.stop()
    finally:
        c.stop_all()
