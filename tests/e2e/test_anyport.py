"""Issue 11: every port of every VM through eBPF sk_lookup.

Everything runs in network namespaces made here, so that steering never
shadows a port of the host's:

  G  (vap{pid}g) the appliance: vmgate, its public addresses 2001:db8::10
     and 203.0.113.10 (steered), 2001:db8::20 (not steered) on lo, and a
     "host service" (e2e_multiport.py) on [::]:EXCL and 2001:db8::20:443; the
     client runs here too, its sockets made in G's namespace
  V  (vap{pid}v) the VM, fd01::2 (G holds fd01::1 on the veth between):
     e2e_multiport.py listening on every port dialled (and 22), answering
     "port=N\\n" with the port it was reached on, then echoing

VM ids: vm1 (every port), vmp (ports: [8080, "9000-9010"]) at the same
address. vm.test maps 443 to 22.
"""

import ctypes
import json
import os
import random
import signal
import socket
import ssl
import struct
import subprocess
import time

import pytest

from e2e_net import run, stop_process
from e2e_util import Hello, plaintext_alerts, read_answer, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
PY = "/usr/bin/python3"
IP = "/usr/sbin/ip"
ADDR6, ADDR4, OTHER6 = "2001:db8::10", "203.0.113.10", "2001:db8::20"
EXCL = 2222          # listen.exclude_ports: left to the host service
FIXED = [22, 443, 3000, 8080, 65535]
CLONE_NEWNET = 0x40000000
UNRECOGNIZED_NAME = 112

libc = ctypes.CDLL("libc.so.6", use_errno=True)


class netns:
    """with netns(name): the calling thread is in namespace |name|; the
    sockets it makes there stay in it after the block."""

    def __init__(self, name):
        self.name = name

    def __enter__(self):
        self.home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        fd = os.open("/run/netns/" + self.name, os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET):
                raise OSError(ctypes.get_errno(), "setns " + self.name)
        finally:
            os.close(fd)

    def __exit__(self, *exc):
        libc.setns(self.home, CLONE_NEWNET)
        os.close(self.home)


def ns_socket(ns, addr):
    with netns(ns):
        return socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET,
                             socket.SOCK_STREAM)


def netns_links(ns):
    """Ids of the sk_lookup bpf_links attached to namespace |ns| (libbpf's
    bpf_link_get_next_id and bpf_obj_get_info_by_fd, through ctypes)."""
    lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
    ino = os.stat("/run/netns/" + ns).st_ino
    cur, nxt, out = 0, ctypes.c_uint32(), []
    while lib.bpf_link_get_next_id(ctypes.c_uint32(cur), ctypes.byref(nxt)) == 0:
        cur = nxt.value
        fd = lib.bpf_link_get_fd_by_id(ctypes.c_uint32(cur))
        if fd < 0:
            continue
        info = (ctypes.c_uint8 * 256)()
        ln = ctypes.c_uint32(256)
        r = lib.bpf_obj_get_info_by_fd(fd, info, ctypes.byref(ln))
        os.close(fd)
        if r:
            continue
        ltype, lid, _ = struct.unpack_from("<III", bytes(info), 0)
        # struct bpf_link_info: the union is 8-byte aligned, at 16;
        # BPF_LINK_TYPE_NETNS = 5, its netns_ino and attach_type
        # (BPF_SK_LOOKUP = 36).
        if ltype == 5:
            nino, atype = struct.unpack_from("<II", bytes(info), 16)
            if nino == ino and atype == 36:
                out.append(lid)
    return out


class Topo:
    def __init__(self, workdir):
        self.pid = os.getpid()
        self.g = "vap%dg" % self.pid
        self.v = "vap%dv" % self.pid
        self.dir = os.path.join(workdir, "anyport")
        os.makedirs(self.dir, exist_ok=True)
        self.procs = []
        self.mounts = []
        veth = "vap%da" % self.pid
        run([IP, "netns", "add", self.g])
        run([IP, "netns", "add", self.v])
        run([IP, "link", "add", veth, "type", "veth", "peer", "name", "eth0",
             "netns", self.v])
        run([IP, "link", "set", veth, "netns", self.g])
        g = [IP, "-n", self.g]
        v = [IP, "-n", self.v]
        run(g + ["link", "set", "lo", "up"])
        run(g + ["link", "set", veth, "up"])
        run(v + ["link", "set", "lo", "up"])
        run(v + ["link", "set", "eth0", "up"])
        run(g + ["addr", "add", "fd01::1/64", "dev", veth, "nodad"])
        run(v + ["addr", "add", "fd01::2/64", "dev", "eth0", "nodad"])
        for a in (ADDR6 + "/128", OTHER6 + "/128"):
            run(g + ["addr", "add", a, "dev", "lo", "nodad"])
        run(g + ["addr", "add", ADDR4 + "/32", "dev", "lo"])

    def spawn(self, ns, argv, name, env=None):
        log = open(os.path.join(self.dir, name + ".log"), "ab")
        p = subprocess.Popen([IP, "netns", "exec", ns] + argv, stdout=log,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True, env=env)
        log.close()
        p.log_path = os.path.join(self.dir, name + ".log")
        self.procs.append(p)
        return p

    def teardown(self):
        for p in self.procs:
            stop_process(p)
        for m in self.mounts:
            run(["umount", m], check=False)
        for ns in (self.g, self.v):
            for pid in run([IP, "netns", "pids", ns], check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            run([IP, "netns", "del", ns], check=False)


def log_text(p):
    with open(p.log_path, errors="replace") as f:
        return f.read()


def wait_line(p, needle, timeout=10.0, since=0):
    def found():
        if p.poll() is not None and needle not in log_text(p)[since:]:
            raise AssertionError("process exited (%s): %s" % (p.returncode,
                                                               log_text(p)[-3000:]))
        return needle in log_text(p)[since:]
    wait_until(found, timeout, what="%r in %s" % (needle, p.log_path))


@pytest.fixture(scope="module")
def topo(workdir):
    t = Topo(workdir)
    try:
        yield t
    finally:
        t.teardown()


@pytest.fixture(scope="module")
def ports(topo):
    """FIXED and 50 random ports, none in G's ephemeral range: the clients
    dial the steered address from G, which holds it, so a client whose
    kernel-chosen source port equals the port it dials connects to itself
    (TCP simultaneous open; it reads its own ClientHello: UNEXPECTED_MESSAGE
    in ~1 of 12 takeover runs, ~2,500 connections each) before sk_lookup
    is ever asked."""
    lo, hi = map(int, run([IP, "netns", "exec", topo.g, "cat",
                           "/proc/sys/net/ipv4/ip_local_port_range"]).stdout.split())
    rnd = random.Random(os.getpid())
    picked = set()
    while len(picked) < 50:
        p = rnd.randint(1, 65535)
        if p not in FIXED and p != EXCL and not lo <= p <= hi:
            picked.add(p)
    assert not any(lo <= p <= hi for p in FIXED), (FIXED, lo, hi)
    return FIXED + sorted(picked)


@pytest.fixture(scope="module")
def vm(topo, ports):
    p = topo.spawn(topo.v, [PY, os.path.join(HERE, "e2e_multiport.py")] +
                   [str(x) for x in ports] + ["8080", "9005", "9011"], "vm")
    wait_line(p, "ready")
    return p


@pytest.fixture(scope="module")
def host_service(topo):
    """What the host itself serves in G: [::]:EXCL and [OTHER6]:443."""
    p = topo.spawn(topo.g, [PY, os.path.join(HERE, "e2e_multiport.py"),
                            str(EXCL), "[%s]:443" % OTHER6], "host")
    wait_line(p, "ready")
    return p


def write_config(topo, certs, name, listen, workers=2, vmp_ports='[8080, "9000-9010"]'):
    path = os.path.join(topo.dir, name + ".yaml")
    with open(path, "w") as f:
        f.write("\n".join([
            "workers: %d" % workers,
            "log_level: info",
            "listen:",
        ] + ["  " + line for line in listen] + [
            "tls:",
            "  certificates:",
            "    - { cert: %s, key: %s }" % (certs.vm_cert, certs.vm_key),
            "domains:",
            "  - suffix: vm.test",
            "    port_map: { 443: 22 }",
            "vms:",
            '  - { id: vm1, address: "fd01::2" }',
            '  - { id: vmp, address: "fd01::2", ports: %s }' % vmp_ports,
            "admin:",
            "  unix: %s" % os.path.join(topo.dir, name + ".sock"),
            "  state_file: %s" % os.path.join(topo.dir, name + ".state"),
        ]) + "\n")
    return path


def start_gate(topo, gate_bin, cfg, name, args=(), env=None):
    p = topo.spawn(topo.g, gate_bin + ["-c", cfg] + list(args), name, env=env)
    wait_line(p, " INFO ready ")
    return p


def dial(topo, certs, addr, port, sni="vm1.vm.test", size=4096, ctx=None):
    """One TLS connection from G to [addr]:port with |sni|: |size| random
    bytes through the VM's echo. -> (the VM port it reached, echo ok)."""
    s = ns_socket(topo.g, addr)
    s.settimeout(10)
    s.connect((addr, port))
    lport = s.getsockname()[1]
    try:
        t = (ctx or certs.client_ctx()).wrap_socket(s, server_hostname=sni)
    except Exception as e:
        e.lport = lport  # for the gate log lines of a failure
        s.close()
        raise
    try:
        payload = os.urandom(size)
        t.sendall(payload)
        buf = b""
        while b"\n" not in buf or len(buf) < buf.index(b"\n") + 1 + size:
            d = t.recv(65536)
            if not d:
                break
            buf += d
        head, _, body = buf.partition(b"\n")
        assert head.startswith(b"port="), buf[:80]
        return int(head[5:]), body == payload
    finally:
        t.close()


def raw_refusal(topo, addr, port, sni):
    """The plaintext alerts a raw ClientHello gets, and how it ended."""
    s = ns_socket(topo.g, addr)
    s.settimeout(10)
    s.connect((addr, port))
    try:
        s.sendall(Hello(sni=sni).records())
        data, how = read_answer(s, timeout=5)
    finally:
        s.close()
    return plaintext_alerts(data), data


def plain_port(topo, addr, port):
    """A plain TCP connect from G: what the host service says ("port=N"), or
    None when nothing answers in plain text within a second."""
    s = ns_socket(topo.g, addr)
    s.settimeout(5)
    try:
        s.connect((addr, port))
        s.settimeout(1)
        try:
            d = s.recv(64)
        except socket.timeout:
            return None
        return d.split(b"\n")[0].decode()
    finally:
        s.close()


def metrics(topo, name):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(os.path.join(topo.dir, name + ".sock"))
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data, _ = read_answer(s, timeout=5)
    s.close()
    out = {}
    for line in data.decode().split("\r\n\r\n", 1)[1].splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            out[k] = int(v)
    return out


def check_reach(topo, certs, ports, addrs):
    bad = []
    for addr in addrs:
        for port in ports:
            got, same = dial(topo, certs, addr, port)
            want = 22 if port == 443 else port
            if got != want or not same:
                bad.append((addr, port, got, same))
    assert not bad, "wrong VM port or bytes: %s" % bad


def check_vm_ports_policy(topo, certs, gate, port):
    """vmp's ports are 8080 and 9000-9010: |port| is refused from the raw
    ClientHello (unrecognized_name, no ServerHello), 8080 is reached."""
    mark = len(log_text(gate))
    alerts, data = raw_refusal(topo, ADDR6, port, "vmp.vm.test")
    assert alerts == [(2, UNRECOGNIZED_NAME)], data[:40]
    assert b"\x16\x03\x03" not in data  # no ServerHello: no crypto done
    wait_line(gate, "reason=port_denied", since=mark)
    assert dial(topo, certs, ADDR6, 8080, sni="vmp.vm.test") == (8080, True)


@pytest.mark.timeout(180)
def test_every_port_sk_lookup(topo, certs, gate_bin, vm, host_service, ports):
    cfg = write_config(topo, certs, "sk", [
        'addresses: ["%s", "%s"]' % (ADDR6, ADDR4),
        "ports: all",
        "exclude_ports: [%d]" % EXCL,
    ])
    gate = start_gate(topo, gate_bin, cfg, "sk")
    try:
        text = log_text(gate)
        assert "steering=sk_lookup ports=65534 addresses=2 excluded=1" in text
        assert ' reason="auto: the sk_lookup program attached"' in text
        assert len(netns_links(topo.g)) == 1
        # Attached and listening: CAP_BPF (39), CAP_NET_ADMIN (12) and
        # CAP_SYS_ADMIN (21) are gone from every set of every thread.
        assert "INFO capabilities dropped=CAP_BPF" in text
        for tid in os.listdir("/proc/%d/task" % gate.pid):
            with open("/proc/%d/task/%s/status" % (gate.pid, tid)) as f:
                st = dict(line.split(":\t", 1) for line in f.read().splitlines()
                          if ":\t" in line)
            for k in ("CapEff", "CapPrm", "CapBnd"):
                v = int(st[k], 16)
                assert not v & (1 << 39 | 1 << 12 | 1 << 21), (tid, k, st[k])

        # 55 ports over IPv6 and IPv4, each to the same port of the VM
        # (443 to 22 through port_map), byte-exact.
        check_reach(topo, certs, ports, [ADDR6, ADDR4])

        # vms[].ports: refused before crypto.
        check_vm_ports_policy(topo, certs, gate, 3000)

        # The host keeps an excluded port and an address not steered.
        assert plain_port(topo, ADDR6, EXCL) == "port=%d" % EXCL
        assert plain_port(topo, ADDR4, EXCL) == "port=%d" % EXCL
        assert plain_port(topo, OTHER6, 443) == "port=443"

        # Spread over the two workers' listeners by SO_REUSEPORT.
        m = metrics(topo, "sk")
        per = [m['vmgate_worker_accepted_total{worker="%d"}' % i] for i in (0, 1)]
        total = m["vmgate_connections_accepted_total"]
        assert sum(per) == total and total >= 2 * len(ports), m
        assert min(per) >= total * 0.15, per
    finally:
        stop_process(gate)
    # A clean stop detaches too.
    wait_until(lambda: netns_links(topo.g) == [], 10, what="no link after SIGTERM")


@pytest.mark.timeout(120)
def test_reload_changes_steering(topo, certs, gate_bin, vm, host_service, ports):
    """SIGHUP changes the steered ports (map updates); an established
    connection goes on through it."""
    extra = ports[-1]
    listen = ['addresses: ["%s"]' % ADDR6, "ports: [%s]" % ", ".join(
        str(p) for p in ports[:-1])]
    cfg = write_config(topo, certs, "rl", listen)
    gate = start_gate(topo, gate_bin, cfg, "rl")
    try:
        # Established before the reload, used after it.
        s = ns_socket(topo.g, ADDR6)
        s.settimeout(10)
        s.connect((ADDR6, 8080))
        t = certs.client_ctx().wrap_socket(s, server_hostname="vm1.vm.test")
        t.sendall(b"before\n")
        assert t.recv(64).startswith(b"port=8080\n")

        # Not steered yet: nothing in G listens there.
        with pytest.raises(ConnectionRefusedError):
            dial(topo, certs, ADDR6, extra)
        mark = len(log_text(gate))
        write_config(topo, certs, "rl", listen[:1] + [
            "ports: [%s]" % ", ".join(str(p) for p in ports[1:])])
        gate.send_signal(signal.SIGHUP)
        wait_line(gate, "steering=sk_lookup ports=%d addresses=1" %
                  (len(ports) - 1), since=mark)
        assert dial(topo, certs, ADDR6, extra) == (extra, True)
        # ports[0] (22) left the list: refused now.
        with pytest.raises(ConnectionRefusedError):
            dial(topo, certs, ADDR6, ports[0])

        got = b""
        t.sendall(b"after\n")
        while not got.endswith(b"after\n"):
            d = t.recv(64)
            assert d, got
            got += d
        assert got in (b"before\nafter\n", b"after\n"), got
        t.close()
    finally:
        stop_process(gate)


@pytest.mark.timeout(60)
def test_reload_swaps_addresses_in_a_full_map(topo, certs, gate_bin, vm,
                                              host_service):
    """200 steered addresses, then 100 others: the map (256 entries) cannot
    hold both sets at once, so the old ones go first; the reload
    succeeds and the new set is steered. (It failed with E2BIG and left
    56 of the new addresses steered under the old file.)"""
    old = ["fd7e:%x::1" % i for i in range(1, 200)] + [ADDR6]
    new = ["fd7f:%x::1" % i for i in range(1, 100)] + [ADDR6]
    cfg = write_config(topo, certs, "full", [
        "addresses: [%s]" % ", ".join('"%s"' % a for a in old), "ports: [8080]"])
    gate = start_gate(topo, gate_bin, cfg, "full")
    try:
        assert dial(topo, certs, ADDR6, 8080) == (8080, True)
        mark = len(log_text(gate))
        write_config(topo, certs, "full", [
            "addresses: [%s]" % ", ".join('"%s"' % a for a in new), "ports: [8080]"])
        gate.send_signal(signal.SIGHUP)
        wait_line(gate, "steering=sk_lookup ports=1 addresses=100", since=mark)
        assert "reload_error" not in log_text(gate)[mark:], log_text(gate)[mark:]
        assert dial(topo, certs, ADDR6, 8080) == (8080, True)
    finally:
        stop_process(gate)


@pytest.mark.timeout(120)
def test_listeners_mode(topo, certs, gate_bin, vm, host_service, ports):
    """steering: listeners, the explicit-port-list tests again."""
    explicit = FIXED + ports[len(FIXED):len(FIXED) + 10]
    cfg = write_config(topo, certs, "ls", [
        'addresses: ["%s", "%s"]' % (ADDR6, ADDR4),
        "ports: [%s]" % ", ".join(str(p) for p in explicit + [8080]),
        "steering: listeners",
    ])
    gate = start_gate(topo, gate_bin, cfg, "ls")
    try:
        assert "steering=listeners" in log_text(gate)
        assert netns_links(topo.g) == []
        check_reach(topo, certs, explicit, [ADDR6, ADDR4])
        check_vm_ports_policy(topo, certs, gate, 3000)
        assert plain_port(topo, OTHER6, 443) == "port=443"
    finally:
        stop_process(gate)


@pytest.mark.timeout(60)
def test_listeners_mode_leaves_the_admin_port(topo, certs, gate_bin, vm):
    """steering: listeners with the admin API's port among listen.ports on
    its address: the port stays the API's, as steering leaves it (vmgate
    opened a data listener there first, the API's bind failed and startup
    ended after 5 s of listen_busy)."""
    _admin_port_kept(topo, certs, gate_bin, "ls-adm", ADDR6, [
        'addresses: ["%s"]' % ADDR6, "ports: [8080, 9901]", "steering: listeners"])


def _admin_port_kept(topo, certs, gate_bin, name, admin_addr, listen):
    """A gate of |listen| with its admin API on [admin_addr]:9901: the API
    answers there, port 8080 is the data plane's."""
    token = os.path.join(topo.dir, name + ".token")
    with open(token, "w") as f:
        f.write("t0ken\n")
    cfg = write_config(topo, certs, name, listen)
    with open(cfg, "a") as f:
        f.write('  listen: "[%s]:9901"\n  token_file: %s\n' % (admin_addr, token))
    gate = start_gate(topo, gate_bin, cfg, name)
    try:
        s = ns_socket(topo.g, ADDR6)
        s.settimeout(5)
        s.connect((ADDR6, 9901))
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data, _ = read_answer(s, timeout=5)
        s.close()
        assert data.startswith(b"HTTP/1.1 200"), data[:80]
        assert dial(topo, certs, ADDR6, 8080) == (8080, True)
    finally:
        stop_process(gate)


@pytest.mark.timeout(60)
def test_steering_listener_dialled_directly(topo, certs, gate_bin, vm):
    """The steering listeners sit on 127.0.0.1 at an ephemeral port that
    any local user can read: a connection made to it directly, not
    steered, is refused (it reached the VM on that port, whatever
    listen.ports said), and steered ones go on."""
    cfg = write_config(topo, certs, "eph", ['addresses: ["%s"]' % ADDR6,
                                            "ports: [8080]", "steering: sk_lookup"])
    gate = start_gate(topo, gate_bin, cfg, "eph")
    try:
        out = run([IP, "netns", "exec", topo.g, "ss", "-Hltnp"]).stdout
        eph = [int(l.split()[3].rsplit(":", 1)[1]) for l in out.splitlines()
               if "127.0.0.1]:" in l and "pid=%d," % gate.pid in l]
        assert eph, out
        # the VM serves that port too: reaching it is what must not happen
        svc = topo.spawn(topo.v, [PY, os.path.join(HERE, "e2e_multiport.py"),
                                  str(eph[0])], "vm-eph")
        wait_line(svc, "ready")
        try:
            got = dial(topo, certs, "127.0.0.1", eph[0])
        except (ssl.SSLError, OSError) as e:
            got = repr(e)
        assert got != (eph[0], True), "reached the VM on port %d" % eph[0]
        assert dial(topo, certs, ADDR6, 8080) == (8080, True)
    finally:
        stop_process(gate)


def test_listeners_refuse_all(topo, certs, gate_bin):
    cfg = write_config(topo, certs, "bad", ["ports: all", "steering: listeners"])
    r = run(gate_bin + ["--check", "-c", cfg], check=False)
    assert r.returncode == 1
    assert "listen.ports: all needs steering: sk_lookup" in r.stdout + r.stderr


@pytest.mark.timeout(120)
def test_kill9_restart(topo, certs, gate_bin, vm, host_service, ports):
    cfg = write_config(topo, certs, "k9", ['addresses: ["%s"]' % ADDR6,
                                           'ports: ["1-65535"]',
                                           "exclude_ports: [%d]" % EXCL])
    gate = start_gate(topo, gate_bin, cfg, "k9")
    first = netns_links(topo.g)
    assert len(first) == 1
    assert dial(topo, certs, ADDR6, ports[-1]) == (ports[-1], True)
    gate.kill()
    gate.wait(5)
    # The link went with the process: nothing stale steers to a dead socket.
    wait_until(lambda: netns_links(topo.g) == [], 10, what="the link to go after kill -9")
    with pytest.raises(ConnectionRefusedError):
        dial(topo, certs, ADDR6, 8080)

    gate = start_gate(topo, gate_bin, cfg, "k9b")
    try:
        again = netns_links(topo.g)
        assert len(again) == 1 and again != first
        assert dial(topo, certs, ADDR6, 8080) == (8080, True)
        assert dial(topo, certs, ADDR6, 65535) == (65535, True)
    finally:
        stop_process(gate)


@pytest.mark.timeout(60)
def test_admin_put_ports(topo, certs, gate_bin, vm, host_service):
    """PUT /vms/{id} with "ports" restricts a VM at once, and persists."""
    cfg = write_config(topo, certs, "ad", ['addresses: ["%s"]' % ADDR6,
                                           "ports: all",
                                           "exclude_ports: [%d]" % EXCL])
    gate = start_gate(topo, gate_bin, cfg, "ad")
    try:
        assert not _reaches(topo, certs, 9011, "vm2.vm.test")  # unknown yet
        body = json.dumps({"address": "fd01::2",
                           "ports": [9011, "8080-8080"]}).encode()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(os.path.join(topo.dir, "ad.sock"))
        s.sendall(b"PUT /vms/vm2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        data, _ = read_answer(s, timeout=5)
        s.close()
        assert data.startswith(b"HTTP/1.1 201"), data
        assert json.loads(data.split(b"\r\n\r\n", 1)[1])["ports"] == "8080,9011"
        with open(os.path.join(topo.dir, "ad.state")) as f:
            assert json.load(f)["vms"]["vm2"] == {"address": "fd01::2",
                                                   "ports": [8080, 9011]}
        # Workers take the new snapshot within a tick.
        wait_until(lambda: _reaches(topo, certs, 9011, "vm2.vm.test"), 5,
                   what="vm2 routed")
        alerts, _ = raw_refusal(topo, ADDR6, 9005, "vm2.vm.test")
        assert alerts == [(2, UNRECOGNIZED_NAME)]
    finally:
        stop_process(gate)


def _reaches(topo, certs, port, sni):
    try:
        return dial(topo, certs, ADDR6, port, sni=sni) == (port, True)
    except (ssl.SSLError, OSError):
        return False


@pytest.mark.timeout(240)
def test_takeover_under_load(topo, certs, gate_bin, vm, host_service, ports):
    """vmgate -c FILE --takeover under load: 2,000+ new connections while
    the new process takes the pinned maps over and the old one drains,
    none refused or reset; the old process's streams go on to the end
    byte-exact."""
    import threading

    bpffs = os.path.join(topo.dir, "bpffs")
    os.makedirs(bpffs, exist_ok=True)
    run(["mount", "-t", "bpf", "bpf", bpffs])
    topo.mounts.append(bpffs)
    run([IP, "netns", "exec", topo.g, "sysctl", "-qw", "net.ipv4.tcp_migrate_req=1"])
    env = dict(os.environ, VMGATE_BPF_DIR=os.path.join(bpffs, "vmgate"))
    cfg = write_config(topo, certs, "up", [
        'addresses: ["%s", "%s"]' % (ADDR6, ADDR4), "ports: all",
        "exclude_ports: [%d]" % EXCL])
    old = start_gate(topo, gate_bin, cfg, "up-old", env=env)
    pins = os.listdir(os.path.join(bpffs, "vmgate"))
    assert len(pins) == 1, pins

    stop_streams, stop_load = threading.Event(), threading.Event()
    streams, errors, done = [], [], []
    since_new = [None]
    request_stop = [old]

    def stream(i):
        ctx = certs.client_ctx()
        s = ns_socket(topo.g, ADDR6)
        s.settimeout(20)
        s.connect((ADDR6, 8080))
        t = ctx.wrap_socket(s, server_hostname="vm1.vm.test")
        head = b""
        while not head.endswith(b"\n"):
            head += t.recv(1)
        sent = got = 0
        h_sent, h_got = [], []
        while not stop_streams.is_set():
            chunk = os.urandom(8192)
            t.sendall(chunk)
            h_sent.append(chunk)
            sent += len(chunk)
            while got < sent:
                d = t.recv(65536)
                if not d:
                    raise AssertionError("stream %d: EOF at %d" % (i, got))
                h_got.append(d)
                got += len(d)
        t.close()
        streams.append((head, b"".join(h_sent) == b"".join(h_got), sent))

    def stream_guard(i):
        try:
            stream(i)
        except Exception as e:  # noqa: BLE001 - reported by the test
            errors.append(("stream", i, repr(e)))

    def load(k):
        ctx = certs.client_ctx()
        rnd = random.Random(k)
        while not stop_load.is_set():
            addr = ADDR6 if rnd.random() < 0.5 else ADDR4
            port = rnd.choice(ports)
            try:
                got, same = dial(topo, certs, addr, port, size=64, ctx=ctx)
                if got != (22 if port == 443 else port) or not same:
                    errors.append(("load", addr, port, got, same))
            except Exception as e:  # noqa: BLE001 - refused/reset fail the test
                errors.append(("load", addr, port, repr(e),
                               getattr(e, "lport", None)))
            done.append(time.monotonic())

    threads = [threading.Thread(target=stream_guard, args=(i,)) for i in range(4)]
    threads += [threading.Thread(target=load, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: len(done) >= 300, 60, what="load before the upgrade")
        since_new[0] = time.monotonic()
        new = start_gate(topo, gate_bin, cfg, "up-new", args=["--takeover"], env=env)
        request_stop.append(new)
        assert "INFO takeover old_pid=%d tcp_migrate_req=1" % old.pid in log_text(new)
        # The old process is told to drain: it stops accepting, its
        # streams go on.
        wait_line(old, "signal=SIGTERM", timeout=10)
        wait_until(lambda: sum(1 for x in done if x > since_new[0]) >= 2000, 120,
                   what="2,000 connections during the upgrade")
        stop_streams.set()
        assert old.wait(30) == 0, log_text(old)[-2000:]
        end = time.monotonic()
        wait_until(lambda: len([x for x in done if x > end]) >= 200, 60,
                   what="connections after the old process left")
    except BaseException:
        stop_streams.set()
        stop_load.set()
        for p in request_stop:
            if p.poll() is None:
                stop_process(p)
        raise
    finally:
        stop_streams.set()
        stop_load.set()
        for t in threads:
            t.join(30)
    try:
        during = sum(1 for x in done if since_new[0] < x <= end)

        def lines_of(err):
            lport = err[-1] if err[0] == "load" else None
            if not isinstance(lport, int):
                return ""
            return "\n".join("%s: %s" % (p.log_path, l) for p in (old, new)
                             for l in log_text(p).splitlines()
                             if ":%d " % lport in l)
        assert not errors, (errors[:10], "\n".join(lines_of(e) for e in errors[:10]))
        assert during >= 2000, during
        assert len(streams) == 4 and all(h == b"port=8080\n" and ok and n > 0
                                         for h, ok, n in streams), streams
        # Only the new process's link is left; it owns the pins now.
        assert len(netns_links(topo.g)) == 1
        assert os.listdir(os.path.join(bpffs, "vmgate")) == pins
        m = metrics(topo, "up")
        assert m["vmgate_connections_accepted_total"] > 0, m
        stop_process(new)
        # The last owner, stopping, takes its pins away.
        assert os.listdir(os.path.join(bpffs, "vmgate")) == []
    finally:
        # A gate left steering `ports: all` would take the next test's
        # connections.
        for p in request_stop:
            if p.poll() is None:
                stop_process(p)


def admin_call(topo, name, method, path, body=None):
    """One request on gate |name|'s admin socket: (status, parsed body)."""
    data = json.dumps(body).encode() if body is not None else b""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(os.path.join(topo.dir, name + ".sock"))
    s.sendall(b"%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (method.encode(), path.encode(),
                                                 len(data), data))
    ans, _ = read_answer(s, timeout=5)
    s.close()
    head, rest = ans.split(b"\r\n\r\n", 1)
    return int(head.split()[1]), json.loads(rest)


@pytest.mark.timeout(90)
def test_takeover_reads_the_state_file_once_the_old_one_is_gone(
        topo, certs, gate_bin, vm, ports):
    """--takeover reads the state file at startup, while the old process
    may still persist changes (until its SIGTERM): the new one's API
    changes nothing until the old one has exited (503), then it reads the
    state file again and routes what the old one wrote. (Those changes
    were lost: the new process never read them, and its first write
    overwrote them.) The old one's late write is the state file edited
    while it drains."""
    bpffs = os.path.join(topo.dir, "bpffs-st")
    os.makedirs(bpffs, exist_ok=True)
    run(["mount", "-t", "bpf", "bpf", bpffs])
    topo.mounts.append(bpffs)
    env = dict(os.environ, VMGATE_BPF_DIR=os.path.join(bpffs, "vmgate"))
    cfg = write_config(topo, certs, "st", [
        'addresses: ["%s"]' % ADDR6, "ports: all", "exclude_ports: [%d]" % EXCL])
    state = os.path.join(topo.dir, "st.state")
    old = start_gate(topo, gate_bin, cfg, "st-old", env=env)
    procs = [old]
    try:
        assert admin_call(topo, "st", "PUT", "/vms/early",
                          {"address": "fd01::2"})[0] == 201
        # A stream through the old process keeps it draining.
        s = ns_socket(topo.g, ADDR6)
        s.settimeout(10)
        s.connect((ADDR6, 8080))
        t = certs.client_ctx().wrap_socket(s, server_hostname="vm1.vm.test")
        head = b""
        while not head.endswith(b"\n"):
            head += t.recv(1)
        new = start_gate(topo, gate_bin, cfg, "st-new", args=["--takeover"],
                         env=env)
        procs.append(new)
        wait_line(old, "signal=SIGTERM", timeout=10)
        # What the old one persisted after the new one read the file.
        with open(state) as f:
            st = json.load(f)
        st["vms"]["late"] = {"address": "fd01::2"}
        with open(state + ".edit", "w") as f:
            json.dump(st, f)
        os.replace(state + ".edit", state)
        code, body = admin_call(topo, "st", "PUT", "/vms/third",
                                {"address": "fd01::2"})
        assert code == 503 and "upgrade is taking over" in body["error"], body
        assert admin_call(topo, "st", "GET", "/vms/early")[0] == 200
        t.close()
        assert old.wait(30) == 0, log_text(old)[-2000:]
        wait_line(new, "INFO takeover old_pid=%d exited: state file read "
                  "again, api_changes=2" % old.pid, timeout=10)
        assert admin_call(topo, "st", "GET", "/vms/late")[0] == 200
        wait_until(lambda: _reaches(topo, certs, 8080, "late.vm.test"), 5,
                   what="late routed")
        assert admin_call(topo, "st", "PUT", "/vms/third",
                          {"address": "fd01::2"})[0] == 201
        with open(state) as f:
            assert sorted(json.load(f)["vms"]) == ["early", "late", "third"]
    finally:
        for p in procs:
            if p.poll() is None:
                stop_process(p)


def _bpffs(topo, name):
    """A bpffs of the test's own: -> the environment naming it
    (VMGATE_BPF_DIR)."""
    bpffs = os.path.join(topo.dir, "bpffs-" + name)
    os.makedirs(bpffs, exist_ok=True)
    run(["mount", "-t", "bpf", "bpf", bpffs])
    topo.mounts.append(bpffs)
    return dict(os.environ, VMGATE_BPF_DIR=os.path.join(bpffs, "vmgate"))


def _takeover_old(topo, certs, gate_bin, name):
    """The process to be taken over, every port of ADDR6 steered, with
    its maps pinned in a bpffs of the test's own, serving. -> (env, cfg,
    process)."""
    env = _bpffs(topo, name)
    cfg = write_config(topo, certs, name, [
        'addresses: ["%s"]' % ADDR6, "ports: all", "exclude_ports: [%d]" % EXCL])
    old = start_gate(topo, gate_bin, cfg, name + "-old", env=env)
    assert dial(topo, certs, ADDR6, 8080) == (8080, True)
    return env, cfg, old


def _held_takeover(topo, gate_bin, cfg, name, env):
    """vmgate --takeover, held where it has read the old process's maps
    and not yet taken over (VMGATE_TEST_TAKEOVER_GATE). -> (process, a
    function that lets it go on)."""
    gate = os.path.join(topo.dir, name + ".gate")
    os.mkfifo(gate)
    p = topo.spawn(topo.g, gate_bin + ["-c", cfg, "--takeover"], name,
                   env=dict(env, VMGATE_TEST_TAKEOVER_GATE=gate))
    wait_line(p, "test_gate=", timeout=20)

    def release():
        with open(gate, "w"):
            pass
    return p, release


@pytest.mark.timeout(90)
def test_takeover_when_the_old_one_exits_first(topo, certs, gate_bin, vm,
                                               host_service, ports):
    """The process taken over exits on its own (it was draining already,
    or crashed) after the new one read the pinned maps and before it
    tells it to stop: the new one goes on serving (it gave up with "No
    such process" and left nothing steered), and the maps are pinned
    again for the next --takeover (the old one took the pins with it)."""
    env, cfg, old = _takeover_old(topo, certs, gate_bin, "gone")
    pins = env["VMGATE_BPF_DIR"]
    procs = [old]
    try:
        new, release = _held_takeover(topo, gate_bin, cfg, "gone-new", env)
        procs.append(new)
        # A clean exit: it removes the pins, it still being their owner.
        old.send_signal(signal.SIGTERM)
        assert old.wait(30) == 0, log_text(old)[-2000:]
        assert not os.listdir(pins)
        release()
        wait_line(new, " INFO ready ", timeout=20)
        assert new.poll() is None, log_text(new)[-2000:]
        wait_until(lambda: _reaches(topo, certs, 8080, "vm1.vm.test"), 10,
                   what="served by the new process")
        assert dial(topo, certs, ADDR6, ports[0])[0] == ports[0]
        dirs = os.listdir(pins)
        assert len(dirs) == 1, dirs
        assert sorted(os.listdir(os.path.join(pins, dirs[0]))) == sorted(
            ["steer_addrs", "steer_ports", "steer_socks", "steer_meta"])
    finally:
        for p in procs:
            if p.poll() is None:
                stop_process(p)


@pytest.mark.timeout(90)
def test_takeover_that_fails_leaves_the_old_one_serving(topo, certs, gate_bin, vm,
                                                       host_service, ports):
    """A --takeover process that dies before it takes over (after opening
    its listeners, before telling the old one to stop): the old process
    goes on serving every port. (The new listeners had replaced the old
    ones in the steering map as they opened: once they closed, every
    steered connection was refused while the old process ran on.)"""
    env, cfg, old = _takeover_old(topo, certs, gate_bin, "fail")
    procs = [old]
    try:
        new, _ = _held_takeover(topo, gate_bin, cfg, "fail-new", env)
        procs.append(new)
        new.send_signal(signal.SIGKILL)
        new.wait(10)
        for port in (8080, ports[0], ports[-1]):
            assert dial(topo, certs, ADDR6, port)[0] == port, port
        assert old.poll() is None and "signal=SIGTERM" not in log_text(old)
    finally:
        for p in procs:
            if p.poll() is None:
                stop_process(p)


@pytest.mark.timeout(90)
def test_draining_old_one_leaves_the_maps_alone(topo, certs, gate_bin, vm,
                                                host_service, ports):
    """After a takeover the old process, draining, still reloads the file
    but no longer writes the steering maps: they are the new process's
    (a late write of the old one's view undid the new one's, its admin
    port among them). The new one applies the change."""
    env = _bpffs(topo, "drn")
    listen = ['addresses: ["%s"]' % ADDR6, "ports: all"]
    cfg = write_config(topo, certs, "drn", listen + ["exclude_ports: [%d]" % EXCL])
    old = start_gate(topo, gate_bin, cfg, "drn-old", env=env)
    procs = [old]
    try:
        # A stream through the old process keeps it draining.
        s = ns_socket(topo.g, ADDR6)
        s.settimeout(10)
        s.connect((ADDR6, 8080))
        t = certs.client_ctx().wrap_socket(s, server_hostname="vm1.vm.test")
        head = b""
        while not head.endswith(b"\n"):
            head += t.recv(1)
        new = start_gate(topo, gate_bin, cfg, "drn-new", args=["--takeover"], env=env)
        procs.append(new)
        wait_line(old, "signal=SIGTERM", timeout=10)
        mark_old, mark_new = len(log_text(old)), len(log_text(new))
        write_config(topo, certs, "drn", listen + ["exclude_ports: [%d, 9005]" % EXCL])
        wait_line(new, "INFO reload trigger=file steering=sk_lookup", timeout=10,
                  since=mark_new)
        wait_line(old, "INFO reload trigger=file vms=", timeout=10, since=mark_old)
        assert "steering=sk_lookup" not in log_text(old)[mark_old:], \
            log_text(old)[mark_old:]
        # the new one's change is in: 9005 is left to the kernel (nothing
        # listens there)
        s2 = ns_socket(topo.g, ADDR6)
        s2.settimeout(5)
        with pytest.raises(ConnectionRefusedError):
            s2.connect((ADDR6, 9005))
        s2.close()
        t.close()
        assert old.wait(30) == 0, log_text(old)[-2000:]
    finally:
        for p in procs:
            if p.poll() is None:
                stop_process(p)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("admin_addr", [ADDR6, "::"])
def test_admin_port_not_steered(topo, certs, gate_bin, vm, admin_addr):
    """ports: all on an address the admin API listens on: its port stays
    the API's, the others are steered. The API on "::" listens on the
    steered address too (its port was steered: the data plane answered)."""
    _admin_port_kept(topo, certs, gate_bin,
                     "adm" if admin_addr == ADDR6 else "adm-any", admin_addr,
                     ['addresses: ["%s"]' % ADDR6, "ports: all"])
