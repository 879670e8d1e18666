"""Issue 4: live reload against a real vmgate of its own (e2e_admin): an
edit of appliance.yaml seen by the file watch, SIGHUP and POST /reload each
add and remove VMs; an invalid edit is refused with FILE:LINE:COL and the
old table keeps serving; a certificate swap reaches new handshakes; an
established stream survives 100 reloads untouched."""

import hashlib
import os
import re
import shutil
import socket
import time

import pytest

from e2e_admin import (ECHO_PORT, AdminGate, echo_once, handshake_error,
                       host, http_health, is_unrecognized_name, leaf_der,
                       make_leaf)
from e2e_util import inotify_watch_list, inotify_watches, peer_re, recv_all, tls_connect, wait_until


@pytest.fixture
def hidden_gate(gate_bin, certs, fleet, tmp_path):
    """An AdminGate whose appliance.yaml is out of the file watch's sight:
    only SIGHUP or POST /reload make it read an edit."""
    g = AdminGate(gate_bin, str(tmp_path / "hidden-gate"), certs,
                  [("vm1", fleet.addr("vm1")), ("vm2", fleet.addr("vm2"))],
                  hidden=True)
    g.start()
    yield g
    g.stop()


@pytest.fixture
def trigger_gate(request, gate_bin, certs, fleet, tmp_path):
    """For tests parametrized by |how| (file, SIGHUP, api): the file-watched
    gate for "file", the hidden one otherwise, so that each trigger is the
    only one at work."""
    how = request.node.callspec.params["how"]
    g = AdminGate(gate_bin, str(tmp_path / "gate"), certs,
                  [("vm1", fleet.addr("vm1")), ("vm2", fleet.addr("vm2"))],
                  hidden=how != "file")
    g.start()
    yield g
    g.stop()


def trigger(g, how):
    if how == "SIGHUP":
        g.hup()
    elif how == "api":
        st, h, body = g.api("POST", "/reload")
        return st, body
    return None


def routed(certs, vid):
    return http_health(certs, vid, timeout=5) == "ok vm1\n"


def assert_rejected(g, certs, vid, mark, timeout=3):
    """|vid| gets an unrecognized_name alert and a reject reason=unknown_vm
    line (waiting up to |timeout| for the change to reach the workers)."""
    def attempt():
        lport, err = handshake_error(certs, vid)
        return (lport, err) if err is not None else None

    r = wait_until(attempt, timeout)
    assert r, "%s still routed\n%s" % (vid, g.tail(since=mark))
    lport, err = r
    assert is_unrecognized_name(err), err
    g.wait_log(r"WARN reject .*%s.*reason=unknown_vm\b" % peer_re(lport),
               since=mark, timeout=3)


# ---------------------------------------------------------------- add / remove

@pytest.mark.parametrize("in_place", [False, True], ids=["rename", "in_place"])
def test_file_edit_adds_vm(admin_gate, fleet, certs, in_place):
    g = admin_gate
    mark = g.mark()
    assert not routed(certs, "added1")
    g.write_config(g.vms + [("added1", fleet.addr("vm1"))], in_place=in_place)
    t0 = time.monotonic()
    assert wait_until(lambda: routed(certs, "added1"), 3), g.tail(since=mark)
    took = time.monotonic() - t0
    g.wait_log(r"INFO reload trigger=file ", since=mark, timeout=3)
    assert took < 3, took
    assert routed(certs, "vm1")


def test_sighup_adds_vm(hidden_gate, fleet, certs):
    g = hidden_gate
    g.write_config(g.vms + [("added2", fleet.addr("vm1"))])
    # the file watch does not see this file: nothing until SIGHUP. It sees
    # changes through inotify watches on directories; the hidden one is
    # not watched (the one that holds the symlink is), so no event comes.
    def ident(path):
        st = os.stat(path)
        return st.st_dev, st.st_ino
    watched = inotify_watches(g.proc.pid)
    assert ident(g.dir) in watched, (g.dir, watched)
    assert ident(os.path.dirname(g.real_cfg)) not in watched, watched
    assert not routed(certs, "added2"), "reloaded without a trigger"
    mark = g.mark()
    g.hup()
    g.wait_log(r"INFO reload trigger=SIGHUP ", since=mark, timeout=3)
    assert wait_until(lambda: routed(certs, "added2"), 2), g.tail(since=mark)


def test_post_reload_adds_vm(hidden_gate, fleet, certs):
    g = hidden_gate
    g.write_config(g.vms + [("added3", fleet.addr("vm1"))])
    assert not routed(certs, "added3")
    mark = g.mark()
    st, h, body = g.api("POST", "/reload")
    assert (st, body) == (200, {"reloaded": True}), body
    g.wait_log(r"INFO reload trigger=api ", since=mark, timeout=3)
    # published when the answer comes: routed within a worker tick
    assert wait_until(lambda: routed(certs, "added3"), 1), g.tail(since=mark)


@pytest.mark.parametrize("how", ["file", "SIGHUP", "api"])
def test_removed_vm_rejected(trigger_gate, certs, how):
    g = trigger_gate
    assert echo_once(certs, "vm2") == b"ping\n"
    mark = g.mark()
    g.write_config([v for v in g.vms if v[0] != "vm2"])
    r = trigger(g, how)
    assert r is None or r[0] == 200, r
    g.wait_log(r"INFO reload trigger=%s .*vms=1\b" % how, since=mark,
               timeout=10)
    assert_rejected(g, certs, "vm2", mark)
    assert echo_once(certs, "vm1") == b"ping\n"


# ---------------------------------------------------------------- invalid edits

def broken_line(text):
    """1-based line number of the broken entry in |text|."""
    for i, line in enumerate(text.splitlines(), 1):
        if "not-an-address" in line:
            return i
    raise AssertionError("no broken line")


@pytest.mark.parametrize("how", ["file", "SIGHUP", "api"])
def test_invalid_edit_ignored(trigger_gate, fleet, certs, how):
    g = trigger_gate
    mark = g.mark()
    text = g.write_config(g.vms + [("added4", fleet.addr("vm1"))],
                          broken=True)
    line = broken_line(text)
    want = r"%s:%d:\d+: \S.*" % (re.escape(g.cfg_path), line)
    r = trigger(g, how)
    if how == "api":
        st, body = r
        assert st == 422, (st, body)
        assert body["error"]
        assert any(re.fullmatch(want, e) for e in body["errors"]), body
    found = g.wait_log(r"ERROR reload_error trigger=%s %s" % (how, want),
                       since=mark, timeout=10)
    assert found
    # nothing changed: the old table keeps serving, the new VM is not there
    assert routed(certs, "vm1")
    assert echo_once(certs, "vm2") == b"ping\n"
    lport, err = handshake_error(certs, "added4")
    assert is_unrecognized_name(err), err
    assert g.api("GET", "/vms/added4")[0] == 404
    # fixing the file brings the change in
    mark = g.mark()
    g.write_config(g.vms)
    r = trigger(g, how)
    assert r is None or r[0] == 200, r
    g.wait_log(r"INFO reload trigger=%s " % how, since=mark, timeout=10)
    assert wait_until(lambda: routed(certs, "added4"), 2), g.tail(since=mark)


# ---------------------------------------------------------------- certificates

def test_certificate_swap(hidden_gate, certs, tmp_path):
    g = hidden_gate
    old = leaf_der(certs, host("vm1"))
    d = str(tmp_path / "newcert")
    os.makedirs(d)
    cert, key, new = make_leaf(certs, d)
    assert new != old
    # a connection made before the swap keeps its session
    before = tls_connect(certs.client_ctx(), host("vm1"), ECHO_PORT)
    try:
        # key first, then the certificate, each replaced atomically
        os.replace(key, g.key)
        os.replace(cert, g.cert)
        mark = g.mark()
        g.hup()
        g.wait_log(r"INFO reload trigger=SIGHUP ", since=mark, timeout=3)
        assert wait_until(lambda: leaf_der(certs, host("vm1")) == new, 2), \
            g.tail(since=mark)
        fp = hashlib.sha256(leaf_der(certs, host("vm2"))).hexdigest()
        assert fp == hashlib.sha256(new).hexdigest()
        before.sendall(b"still here\n")
        got = recv_all(before, limit=11)
        assert got == b"still here\n"
    finally:
        before.close()


# ---------------------------------------------------------------- streams

@pytest.mark.slow
@pytest.mark.timeout(180)
def test_stream_survives_100_reloads(admin_gate, certs):
    """A TLS echo stream through vm1 runs while vmgate reloads 100 times on
    SIGHUP: every byte comes back in order and the connection stays up.
    (One thread drives the TLS socket: an SSL object is not for two.)"""
    g = admin_gate
    s = tls_connect(certs.client_ctx(), host("vm1"), ECHO_PORT, timeout=30)
    sent, got = hashlib.sha256(), hashlib.sha256()
    n = {"sent": 0, "got": 0, "chunk": 0}

    def drain(t):
        s.settimeout(t)
        try:
            while True:
                d = s.recv(65536)
                assert d, "the stream closed during the reloads"
                got.update(d)
                n["got"] += len(d)
        except (TimeoutError, socket.timeout):
            pass

    def pump():
        chunk = (b"%08d" % n["chunk"]) * 512  # 4 KiB, numbered
        n["chunk"] += 1
        s.settimeout(10)
        s.sendall(chunk)
        sent.update(chunk)
        n["sent"] += len(chunk)
        drain(0.002)

    mark = g.mark()
    try:
        for i in range(100):
            g.hup()
            deadline = time.monotonic() + 5
            while len(g.find(r"INFO reload trigger=SIGHUP ", since=mark)) \
                    <= i:
                assert time.monotonic() < deadline, g.tail(since=mark)
                pump()
            for _ in range(4):
                pump()
        deadline = time.monotonic() + 20
        while n["got"] < n["sent"] and time.monotonic() < deadline:
            drain(0.1)
        assert n["got"] == n["sent"], n
        assert got.digest() == sent.digest()
        # still up after the last reload
        s.settimeout(5)
        s.sendall(b"end\n")
        tail = recv_all(s, limit=4)
        assert tail == b"end\n"
    finally:
        s.close()
    assert n["sent"] >= 100 * 4 * 4096, n
    assert len(g.find(r"INFO reload trigger=SIGHUP ", since=mark)) >= 100
    assert not g.find(r"ERROR ", since=mark), g.tail(since=mark)
    assert not g.find(r"close .*%s" % "reason=(?!done)", since=mark), \
        g.tail(since=mark)


# ---------------------------------------------------------------- file watch

def watch_descriptors(pid):
    """{wd: (st_dev, st_ino)} of what process |pid|'s inotify watches."""
    return {wd: (dev, ino) for wd, dev, ino in inotify_watch_list(pid)}


def test_watches_kept_across_reloads(admin_gate):
    """A reload keeps the watches of the directories it still needs: it
    used to remove them all and add them again, and the kernel gives a
    directory a new watch descriptor each time, so events queued while a
    reload ran (a second certificate file rewritten meanwhile) named a
    descriptor no longer watched and were dropped."""
    g = admin_gate
    before = watch_descriptors(g.proc.pid)
    assert before, "no inotify watch"
    for i in range(3):
        mark = g.mark()
        g.hup()
        g.wait_log(r"INFO reload trigger=SIGHUP ", since=mark, timeout=3)
    assert watch_descriptors(g.proc.pid) == before


def test_certificate_symlinks_replaced(gate_bin, certs, fleet, tmp_path):
    """Certificate and key given as symlinks, replaced the way certbot
    renews (each link removed and made again to the new file, which lives
    in another directory): the links' directory sees them created, and the
    new certificate is served without SIGHUP (only writes and renames were
    watched for)."""
    g = AdminGate(gate_bin, str(tmp_path / "links"), certs,
                  [("vm1", fleet.addr("vm1"))], hidden=True)
    archive = str(tmp_path / "archive")
    os.makedirs(archive)
    for path, name in ((g.cert, "cert1.pem"), (g.key, "privkey1.pem")):
        os.rename(path, os.path.join(archive, name))
        os.symlink(os.path.join(archive, name), path)
    g.start()
    try:
        old = leaf_der(certs, host("vm1"))
        cert, key, new = make_leaf(certs, archive)
        assert new != old
        mark = g.mark()
        for link, target in ((g.key, key), (g.cert, cert)):
            os.unlink(link)
            os.symlink(target, link)
        g.wait_log(r"INFO reload trigger=file ", since=mark, timeout=5)
        assert wait_until(lambda: leaf_der(certs, host("vm1")) == new, 3), \
            g.tail(since=mark)
    finally:
        g.stop()


def test_kubernetes_secret_swap(gate_bin, certs, fleet, tmp_path):
    """Certificate and key as a Kubernetes Secret volume mounts them:
    tls.crt -> ..data/tls.crt, ..data -> ..2026_a (and appliance.yaml's
    names links to those): an update makes ..2026_b, points ..data_tmp at
    it and renames ..data_tmp over ..data. No event names tls.crt; the
    link ..data on the way is watched, so the new certificate is served
    without SIGHUP (it was missed until the next restart)."""
    g = AdminGate(gate_bin, str(tmp_path / "k8s"), certs,
                  [("vm1", fleet.addr("vm1"))], hidden=True)
    secret = str(tmp_path / "secret")
    os.makedirs(os.path.join(secret, "..2026_a"))
    os.rename(g.cert, os.path.join(secret, "..2026_a", "tls.crt"))
    os.rename(g.key, os.path.join(secret, "..2026_a", "tls.key"))
    os.symlink("..2026_a", os.path.join(secret, "..data"))
    for name in ("tls.crt", "tls.key"):
        os.symlink(os.path.join("..data", name), os.path.join(secret, name))
    os.symlink(os.path.join(secret, "tls.crt"), g.cert)
    os.symlink(os.path.join(secret, "tls.key"), g.key)
    g.start()
    try:
        old = leaf_der(certs, host("vm1"))
        new_dir = os.path.join(secret, "..2026_b")
        os.makedirs(new_dir)
        cert, key, new = make_leaf(certs, new_dir)
        assert new != old
        os.rename(cert, os.path.join(new_dir, "tls.crt"))
        os.rename(key, os.path.join(new_dir, "tls.key"))
        mark = g.mark()
        os.symlink("..2026_b", os.path.join(secret, "..data_tmp"))
        os.rename(os.path.join(secret, "..data_tmp"), os.path.join(secret, "..data"))
        g.wait_log(r"INFO reload trigger=file ", since=mark, timeout=5)
        assert wait_until(lambda: leaf_der(certs, host("vm1")) == new, 3), \
            g.tail(since=mark)
    finally:
        g.stop()


def test_directory_link_swapped_then_written(gate_bin, certs, fleet, tmp_path):
    """cert: .../current/vm.pem in appliance.yaml, current -> releases/a;
    current is swapped to releases/b (a reload: the link is watched), then
    a new certificate is renamed into releases/b: seen too, without SIGHUP
    (the watch of .../current stayed on releases/a)."""
    g = AdminGate(gate_bin, str(tmp_path / "dirlink"), certs,
                  [("vm1", fleet.addr("vm1"))], hidden=True)
    rel = str(tmp_path / "releases")
    for r in ("a", "b"):
        os.makedirs(os.path.join(rel, r))
        shutil.copy(g.cert, os.path.join(rel, r, "vm.pem"))
        shutil.copy(g.key, os.path.join(rel, r, "vm.key"))
    cur = str(tmp_path / "current")
    os.symlink(os.path.join(rel, "a"), cur)
    g.cert, g.key = os.path.join(cur, "vm.pem"), os.path.join(cur, "vm.key")
    g.write_config(g.vms)
    g.start()
    try:
        old = leaf_der(certs, host("vm1"))
        mark = g.mark()
        os.symlink(os.path.join(rel, "b"), cur + ".new")
        os.rename(cur + ".new", cur)
        g.wait_log(r"INFO reload trigger=file ", since=mark, timeout=5)
        os.makedirs(str(tmp_path / "staging-b"))
        cert, key, new = make_leaf(certs, str(tmp_path / "staging-b"))
        assert new != old
        mark = g.mark()
        os.rename(key, os.path.join(rel, "b", "vm.key"))
        os.rename(cert, os.path.join(rel, "b", "vm.pem"))
        assert wait_until(lambda: leaf_der(certs, host("vm1")) == new, 5), \
            g.tail(since=mark)
    finally:
        g.stop()


def test_file_changed_while_starting_is_read(gate_bin, certs, fleet, tmp_path):
    """A certificate renewed between vmgate reading it and watching its
    directory (stood for by a file time after the start: the event it
    would have sent came before the watch) is read once more as soon as
    the gate runs, without SIGHUP. (It was missed until the next
    event.)"""
    g = AdminGate(gate_bin, str(tmp_path / "startwin"), certs,
                  [("vm1", fleet.addr("vm1"))], hidden=True)
    later = time.time() + 30
    os.utime(g.cert, (later, later))
    mark = 0
    g.start()
    try:
        g.wait_log(r"INFO watch a watched file changed while vmgate started",
                   since=mark, timeout=5)
        g.wait_log(r"INFO reload trigger=file ", since=mark, timeout=5)
    finally:
        g.stop()


def test_no_reload_at_a_quiet_start(admin_gate):
    """Nothing changed while the gate started: no extra reload (the
    file times are kept to the coarse clock they are written with)."""
    assert "changed while vmgate started" not in admin_gate.tail(since=0)


def staged_leaf(certs, tmp_path):
    """A new *.vm.test leaf made in tmp_path/staging: (cert, key, DER)."""
    staging = str(tmp_path / "staging")
    os.makedirs(staging)
    return make_leaf(certs, staging)


def test_failed_reload_watches_its_files(admin_gate, certs, tmp_path):
    """appliance.yaml moves the certificate to a directory not watched
    before, and its key there is not yet the right one: the reload fails
    and the old certificate serves; when the right key arrives it is seen,
    and the reload that follows serves the new certificate (the watches
    followed the last good file only, so nothing but SIGHUP read it)."""
    g = admin_gate
    old = leaf_der(certs, host("vm1"))
    cert, key, new = staged_leaf(certs, tmp_path)
    d = str(tmp_path / "certs-next")
    os.makedirs(d)
    shutil.copy(cert, os.path.join(d, "vm.pem"))
    shutil.copy(certs.other_key, os.path.join(d, "vm.key"))  # not its key
    mark = g.mark()
    g.cert, g.key = os.path.join(d, "vm.pem"), os.path.join(d, "vm.key")
    g.write_config(g.vms)
    g.wait_log(r"ERROR reload_error trigger=file .*does not match", since=mark,
               timeout=5)
    assert leaf_der(certs, host("vm1")) == old
    mark = g.mark()
    os.rename(key, g.key)
    g.wait_log(r"INFO reload trigger=file ", since=mark, timeout=5)
    assert wait_until(lambda: leaf_der(certs, host("vm1")) == new, 3), \
        g.tail(since=mark)


@pytest.mark.parametrize("arrives", ["mkdir", "rename"])
def test_certificate_in_a_directory_made_later(admin_gate, certs, tmp_path,
                                               arrives):
    """appliance.yaml names a certificate two directories below any that
    exists: the reload fails and the old certificate serves. The
    directories are then made and the files written at once (mkdir -p and
    two copies, or a staged directory renamed into place): seen without
    SIGHUP, and the new certificate serves. Before, a directory that did
    not exist could not be watched: only SIGHUP read the files."""
    g = admin_gate
    old = leaf_der(certs, host("vm1"))
    cert, key, new = staged_leaf(certs, tmp_path)
    top = str(tmp_path / "later")
    d = os.path.join(top, "certs")
    mark = g.mark()
    g.cert, g.key = os.path.join(d, "vm.pem"), os.path.join(d, "vm.key")
    g.write_config(g.vms)
    g.wait_log(r"ERROR reload_error trigger=file ", since=mark, timeout=5)
    g.wait_log(r"WARN watch dir=%s error=.*: watched for in %s\b" %
               (re.escape(d), re.escape(str(tmp_path))), since=mark, timeout=5)
    assert leaf_der(certs, host("vm1")) == old
    mark = g.mark()
    if arrives == "mkdir":
        os.makedirs(d)
        shutil.copy(key, g.key)
        shutil.copy(cert, g.cert)
    else:
        stage = str(tmp_path / "stage")
        os.makedirs(os.path.join(stage, "certs"))
        shutil.copy(key, os.path.join(stage, "certs", "vm.key"))
        shutil.copy(cert, os.path.join(stage, "certs", "vm.pem"))
        os.rename(stage, top)
    assert wait_until(lambda: leaf_der(certs, host("vm1")) == new, 5), \
        g.tail(since=mark)
    g.wait_log(r"INFO reload trigger=file ", since=mark, timeout=3)
