"""make config-disk without a boot: the FAT disk it writes holds every file
appliance.yaml names (mtools reads it back), and it warns of what the
appliance cannot keep or find."""

import os
import subprocess

from conftest import REPO


def mfiles(img):
    r = subprocess.run(["mdir", "-i", img, "-b", "-/", "::"], capture_output=True,
                       text=True, timeout=30,
                       env=dict(os.environ, MTOOLS_SKIP_CHECK="1"))
    assert r.returncode == 0, r
    return sorted(l[len("::/"):] for l in r.stdout.split() if not l.endswith("/"))


def test_every_named_file_is_on_the_disk(tmp_path):
    d = tmp_path / "cfg"
    (d / "etcd").mkdir(parents=True)
    for name in ("c.pem", "k.pem", "clients-ca.pem", "token", "etcd/ca.pem",
                 "etcd/client.pem", "etcd/client.key", "etcd/password", "in-config.pem"):
        (d / name).write_text("x\n")
    (d / "appliance.yaml").write_text(
        'listen: { ports: [443] }\n'
        "tls:\n  certificates:\n    - { cert: c.pem, key: k.pem }\n"
        "    - { cert: /config/in-config.pem, key: /etc/ssl/elsewhere.key }\n"
        "admin: { unix: /run/a.sock, token_file: token, state_file: /data/state.json }\n"
        "domains:\n  - { suffix: vm.test, client_auth: { ca: clients-ca.pem } }\n"
        "fleet:\n  etcd:\n    endpoints: [\"https://[fec0::2]:2379\"]\n"
        "    ca_file: etcd/ca.pem\n    cert_file: etcd/client.pem\n"
        "    key_file: etcd/client.key\n    username: u\n"
        "    password_file: etcd/password\n")
    img = str(tmp_path / "config.img")
    r = subprocess.run(["make", "-s", "--no-print-directory", "-C", REPO, "config-disk",
                        "CONFIG=" + str(d / "appliance.yaml"), "OUT=" + img],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r
    assert mfiles(img) == sorted([
        "appliance.yaml", "c.pem", "k.pem", "clients-ca.pem", "token", "in-config.pem",
        "etcd/ca.pem", "etcd/client.pem", "etcd/client.key", "etcd/password"]), r
    # a file the appliance will not have, and a snapshot it cannot write
    assert "warning: /etc/ssl/elsewhere.key is outside the appliance's /config" \
        in r.stderr, r.stderr
    assert "warning: fleet.snapshot_file is not under /data" in r.stderr, r.stderr
    assert "admin.state_file" not in r.stderr, r.stderr


def test_a_missing_named_file_fails(tmp_path):
    d = tmp_path / "cfg"
    d.mkdir()
    for name in ("c.pem", "k.pem"):
        (d / name).write_text("x\n")
    (d / "appliance.yaml").write_text(
        'listen: { ports: [443] }\n'
        "tls:\n  certificates:\n    - { cert: c.pem, key: k.pem }\n"
        "domains:\n  - { suffix: vm.test, client_auth: { ca: nowhere-ca.pem } }\n")
    r = subprocess.run(["make", "-s", "--no-print-directory", "-C", REPO, "config-disk",
                        "CONFIG=" + str(d / "appliance.yaml"),
                        "OUT=" + str(tmp_path / "c.img")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "nowhere-ca.pem: no such file" in r.stderr, r
