"""The initramfs's own vmgate, run in a chroot of the unpacked image (no
boot): fleet mode loads libcurl with dlopen (ctl/etcd.c), so ldd of vmgate
no longer names it and the image must carry it on its own
(image/mkimage.py's DLOPENED). `vmgate --check` of a config with fleet:
loads it; with the library taken out of a copy of the tree, the same check
must fail naming it, which shows the check really loaded it."""

import gzip
import os
import subprocess

import pytest

from conftest import IMAGE

CURL = "libcurl-gnutls.so.4"


def unpack(dest):
    os.makedirs(dest)
    with open(os.path.join(IMAGE, "initramfs.img"), "rb") as f:
        data = gzip.decompress(f.read())
    subprocess.run(["cpio", "-i", "-d", "-m", "--quiet", "--no-absolute-filenames"],
                   input=data, cwd=dest, check=True, timeout=120)
    return dest


def config(root, fleet):
    """A config in root's /tmp whose certificate and key are there too;
    --check reads every file it names."""
    tmp = os.path.join(root, "tmp")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
                    "-subj", "/CN=*.vm.test", "-keyout", os.path.join(tmp, "k.pem"),
                    "-out", os.path.join(tmp, "c.pem")],
                   check=True, capture_output=True, timeout=60)
    text = ('listen: { address: "::", ports: [8443] }\n'
            "tls:\n  certificates:\n    - { cert: /tmp/c.pem, key: /tmp/k.pem }\n"
            "domains:\n  - suffix: vm.test\n"
            'vms:\n  - { id: vm1, address: "fd00::1" }\n')
    if fleet:
        text += ('fleet:\n  etcd:\n    endpoints: ["http://[::1]:2379"]\n'
                 "  appliance_id: image-test\n")
    name = "fleet.yaml" if fleet else "plain.yaml"
    with open(os.path.join(tmp, name), "w") as f:
        f.write(text)
    return "/tmp/" + name


def check(root, cfg):
    return subprocess.run(["chroot", root, "/usr/bin/vmgate", "--check", "-c", cfg],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return unpack(str(tmp_path_factory.mktemp("initramfs") / "root"))


def curl_paths(root):
    out = []
    for d, _, files in os.walk(root):
        out += [os.path.join(d, f) for f in files if f == CURL]
    return out


def test_fleet_check_loads_libcurl_from_the_image(root):
    assert curl_paths(root), "the image carries no %s" % CURL
    r = check(root, config(root, fleet=True))
    assert r.returncode == 0, r.stdout + r.stderr


def test_without_libcurl_fleet_check_names_it_and_plain_check_passes(tmp_path):
    # A tree of its own (the image holds device nodes: unpack, not copy).
    bare = unpack(str(tmp_path / "bare"))
    for p in curl_paths(bare):
        os.unlink(p)
    r = check(bare, config(bare, fleet=True))
    assert r.returncode != 0, r.stdout + r.stderr
    assert CURL in r.stderr and "libcurl3-gnutls" in r.stderr, r.stderr
    r = check(bare, config(bare, fleet=False))
    assert r.returncode == 0, r.stdout + r.stderr
