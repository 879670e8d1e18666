#!/usr/bin/python3
"""vmgate benchmark: the same work through vmgate, HAProxy, nginx stream and
hitch, on loopback, in one run.  `make bench` runs it; BENCH_QUICK=1 is the
short version.  See bench/README.md.

Environment:
  BENCH_QUICK=1        short run (about 2 minutes)
  BENCH_PROXIES=a,b    subset of vmgate,haproxy,nginx,hitch (default: all)
  BENCH_KEEP=1         keep the temporary directory (configs, logs)
  BENCH_VM_ERRORS=http vmgate's domain answers unreachable VMs with an HTTP
                       502 (domains[].vm_errors: http) instead of an alert
  BENCH_W1_RATE=N      W1 rounds: also measure every proxy at N handshakes/s
                       offered (tlsload -r), all at one load
  BENCH_W1_BUDGET=P    W1 rounds: also measure every proxy's handshakes/s
                       held to P% of one core (a CPU cgroup; default 40,
                       0: not done)
  BENCH_SCALE=0        skip the W4 scale step (vmgate only); BENCH_SCALE=N
                       (N >= 1000) sets its target number of pairs
  BENCH_WORKLOADS=w1,w5  only these of w1,w5,w2,w3,w4 (default: all)
  VMGATE_BIN=PATH      the vmgate binary to run (default: build/vmgate)
  VMGATE_OTHER_BIN=PATH  the second vmgate build (default:
                       build/inproc/vmgate, make FLAVOUR=inproc: keys in
                       process; build/vmgate has them in vmgate-signer)
  BENCH_VMGATE_BINS=A,B   the vmgate builds to compare, instead of those two

The vmgate builds are told apart by Kconfig KEY_SIGNER in the config.h
beside each binary (or one directory up): the first with keys in process
is the column "vmgate", the first with vmgate-signer "vmgate+signer".
"""
import datetime
import json
import os
import platform
import re
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BUILD = os.path.join(ROOT, "build", "bench")
VMGATE = os.environ.get("VMGATE_BIN") or os.path.join(ROOT, "build", "vmgate")
RESULTS = os.path.join(HERE, "results")

QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
# Two vmgate columns: keys in process (BoringSSL signs in the worker) and
# keys in vmgate-signer (a child process, OpenSSL 3 signs).
VMGATE_IN, VMGATE_SIGNER = "vmgate", "vmgate+signer"
VMGATES = [VMGATE_IN, VMGATE_SIGNER]
SIGNER_COMM = "vmgate-signer"     # the signer child's /proc/PID/comm
ALL_PROXIES = VMGATES + ["haproxy", "nginx", "hitch"]
PROXIES = [p for p in os.environ.get("BENCH_PROXIES", ",".join(ALL_PROXIES)).split(",") if p]
ALL_WORKLOADS = ["w1", "w5", "w2", "w3", "w4", "w1r"]
WORKLOADS = [w for w in os.environ.get("BENCH_WORKLOADS",
                                       ",".join(ALL_WORKLOADS)).split(",") if w]

PROXY_CPU = "0"          # the proxy under test
LOAD_CPU = "1"           # load generators and the backend
BACKEND_PORT = 24080
PROXY_PORT = 24443
VM_ID = "vm1"
SUFFIX = "bench.internal"
SNI = f"{VM_ID}.{SUFFIX}"
BIG_BYTES = 16 << 20      # W3 download: one response
UPLOAD_BYTES = 1 << 20    # W3 upload: one request body
IDLE_COUNTS = [1000, 9000]

if QUICK:
    REPS, DUR, FLOOR_SECS = 3, 1.0, 0.3
else:
    REPS, DUR, FLOOR_SECS = 5, 4.0, 2.0

W1_CONC = 16     # handshakes in flight
# W1 in rounds (w1r): every proxy once per round, started afresh, in an
# order rotated each round, so that a slow spell of the shared host
# falls on all of them alike; the ratios are taken within each round.
W1R_ROUNDS = 3 if QUICK else 7
W1R_WARM_S = 0.5
# BENCH_W1_RATE: the rounds also measure each proxy at this offered rate,
# below every proxy's limit, so CPU per handshake is compared at one load
# rather than each at what the one-core client can drive (0: not done).
W1R_RATE = int(os.environ.get("BENCH_W1_RATE", "0") or 0)
# BENCH_W1_BUDGET: the rounds also measure each proxy's handshakes/s with
# its whole process tree held to this percent of one core (a CPU cgroup's
# quota, every CPU_BUDGET_PERIOD_US), so the proxy and not the one-core
# client is the limit: capacity on equal CPU (0: not done).
W1R_BUDGET = int(os.environ.get("BENCH_W1_BUDGET", "40") or 0)
CPU_BUDGET_PERIOD_US = 10000
# Below this fraction of its budget a proxy was held back by the client.
BUDGET_HELD = 0.9
W2_CONC = 64     # keep-alive connections
W3_CONC = 4
W5_CONC = 16

# W4 scale (vmgate only): idle client+VM pairs held at once by a vmgate with
# several workers, past what one process's 20,000 open files allow on plain
# fds.  Its own vmgate and its own backend (a multi-worker nginx), on ports
# of their own; several tlsload idle processes, each with its own fd cap.
_scale_env = os.environ.get("BENCH_SCALE", "1").strip()
SCALE = _scale_env not in ("", "0")
SCALE_PROXY_PORT = 24444
SCALE_BACKEND_PORT = 24081
SCALE_WORKERS = 3
SCALE_MAX_CONNECTIONS = 60000
SCALE_BACKEND_WORKERS = 3  # nginx worker_connections 19500 each
SCALE_CLIENTS = 3          # tlsload idle processes
SCALE_CLIENT_MAX = 19000   # what one tlsload idle holds at most (fd cap)
SCALE_STEP = 6000          # pairs added per step
SCALE_TARGET = 12000 if QUICK else 24000
if _scale_env.isdigit() and int(_scale_env) >= 1000:
    SCALE_TARGET = min(int(_scale_env), SCALE_CLIENTS * SCALE_CLIENT_MAX)
SCALE_STEP_S = 20 if QUICK else 40      # bound on one step (tlsload -g)
SCALE_BUDGET_S = 60 if QUICK else 180   # bound on all the steps together
ALL_CPUS = f"0-{(os.cpu_count() or 1) - 1}"

DEB_PACKAGES = ["haproxy", "nginx", "libnginx-mod-stream", "hitch", "wrk",
                "nghttp2-client", "android-boringssl",
                "android-libboringssl-dev", "openssl", "gcc", "util-linux",
                "procps"]

CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(*a):
    print("[bench]", *a, file=sys.stderr, flush=True)


# ----------------------------------------------------------------- setup

def ensure_packages():
    missing = []
    for p in DEB_PACKAGES:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", p],
                           capture_output=True, text=True)
        if "install ok installed" not in r.stdout:
            missing.append(p)
    if not missing:
        return
    log("installing:", " ".join(missing))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-q"] + missing, check=True,
                   env=env, stdout=subprocess.DEVNULL)


def build_tools():
    os.makedirs(BUILD, exist_ok=True)
    src = os.path.join(HERE, "tlsload.c")
    out = os.path.join(BUILD, "tlsload")
    if not os.path.exists(out) or os.path.getmtime(out) < os.path.getmtime(src):
        lib = "/usr/lib/x86_64-linux-gnu/android"
        subprocess.run(["gcc", "-O2", "-Wall", "-std=gnu11", "-D_GNU_SOURCE",
                        "-isystem", "/usr/include/android", "-o", out, src,
                        "-L" + lib, "-Wl,-rpath," + lib, "-lssl", "-lcrypto"],
                       check=True)
    return out


def kconfig_of(binary):
    """The CONFIG_ values of the build that made binary, from the config.h
    beside it (or one directory up: build/asan/ uses build/'s); {} when
    there is none."""
    d = os.path.dirname(os.path.abspath(binary))
    for path in (os.path.join(d, "config.h"),
                 os.path.join(os.path.dirname(d), "config.h")):
        try:
            text = open(path).read()
        except OSError:
            continue
        out = {m.group(1): m.group(2).strip() for m in
               re.finditer(r"^#define (CONFIG_\w+) (.*)$", text, re.M)}
        out["_path"] = path
        return out
    return {}


VMGATE_BUILDS = {}   # column -> {"bin", "key_signer", "config"}


def vmgate_builds(notes):
    """Which binary each vmgate column runs: the first candidate whose
    config.h says KEY_SIGNER=y is "vmgate+signer", the first without it
    "vmgate".  A binary without a config.h counts as keys in process (the
    run itself then looks for a signer child and says if it finds one)."""
    env = os.environ.get("BENCH_VMGATE_BINS")
    if env:
        cands = [x for x in env.split(",") if x]
    else:
        cands = [VMGATE, os.environ.get("VMGATE_OTHER_BIN") or
                 os.path.join(ROOT, "build", "inproc", "vmgate")]
    builds = {}
    for b in cands:
        b = os.path.abspath(b)
        if not os.access(b, os.X_OK):
            continue
        kc = kconfig_of(b)
        if not kc:
            # No config.h: its --version says "keys=signer" or
            # "keys=in-process".
            r = subprocess.run([b, "--version"], capture_output=True,
                               text=True)
            if "keys=signer" in r.stdout + r.stderr:
                kc = {"CONFIG_KEY_SIGNER": "1"}
            notes.append(f"{b}: no config.h beside it; by its --version, "
                         f"keys {'in vmgate-signer' if kc else 'in process'}")
        col = VMGATE_SIGNER if kc.get("CONFIG_KEY_SIGNER") == "1" else VMGATE_IN
        if col in builds:
            if builds[col]["bin"] != b:
                notes.append(f"{b}: same KEY_SIGNER as "
                             f"{builds[col]['bin']}: not run")
            continue
        builds[col] = {"bin": b, "key_signer": col == VMGATE_SIGNER,
                       "config": kc}
    return builds


def build_differences(builds):
    """Kconfig lines in which the vmgate builds differ, besides KEY_SIGNER
    (the comparison is meant to isolate it)."""
    if len(builds) < 2:
        return []
    a, b = (builds[c]["config"] for c in VMGATES)
    if not a.get("_path") or not b.get("_path"):
        return []
    keys = sorted(k for k in set(a) | set(b) if not k.startswith("_") and
                  not k.startswith("CONFIG_KEY_SIGNER"))
    return [f"{k}: {a.get(k, 'n')} / {b.get(k, 'n')}" for k in keys
            if a.get(k) != b.get(k)]


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def make_files(tmp):
    """Certificate, backend docroot, client configs."""
    key, cert = os.path.join(tmp, "key.pem"), os.path.join(tmp, "cert.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
                    "-subj", "/CN=" + SUFFIX, "-addext",
                    f"subjectAltName=DNS:*.{SUFFIX},DNS:{SUFFIX}",
                    "-keyout", key, "-out", cert], check=True,
                   capture_output=True)
    combined = os.path.join(tmp, "combined.pem")
    write(combined, open(cert).read() + open(key).read())
    www = os.path.join(tmp, "www")
    os.makedirs(www)
    with open(os.path.join(www, "big"), "wb") as f:
        block = os.urandom(1 << 20)
        for _ in range(BIG_BYTES >> 20):
            f.write(block)
    # What wrk (OpenSSL) offers: TLS 1.3, AES-128-GCM, X25519 only.
    write(os.path.join(tmp, "openssl-client.cnf"), """\
openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
MinProtocol = TLSv1.3
Ciphersuites = TLS_AES_128_GCM_SHA256
Groups = X25519
""")
    write(os.path.join(tmp, "hosts"),
          f"127.0.0.1 localhost\n::1 localhost {SNI}\n")
    report = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'JSONRESULT {"requests":%d,"bytes":%d,"duration_us":%d,"errors":%d,' ..
    '"status_errors":%d,"p50_us":%d,"p99_us":%d}\\n',
    summary.requests, summary.bytes, summary.duration,
    e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
"""
    write(os.path.join(tmp, "report.lua"), report)
    write(os.path.join(tmp, "upload.lua"), f"""
wrk.method = "POST"
wrk.body = string.rep("u", {UPLOAD_BYTES})
wrk.headers["Content-Type"] = "application/octet-stream"
""" + report)
    return {"cert": cert, "key": key, "combined": combined, "www": www}


# ----------------------------------------------------------------- processes

def proc_tree(pid):
    """pid and all its descendants."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        st = proc_stat(d)
        if st:
            children.setdefault(int(st[1][1]), []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def proc_stat(pid):
    """(comm, the fields after it) of /proc/PID/stat, or None when the
    process is gone. fields[11:15]: utime, stime, cutime, cstime."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    return s[s.index("(") + 1:s.rindex(")")], s[s.rindex(")") + 2:].split()


def cpu_user_sys(pids):
    """(user, system) CPU seconds of pids."""
    u = k = 0
    for p in pids:
        st = proc_stat(p)
        if st:
            u, k = u + int(st[1][11]), k + int(st[1][12])
    return u / CLK_TCK, k / CLK_TCK


def cpu_seconds(pids):
    return sum(cpu_user_sys(pids))


def run_seconds(pid):
    """CPU seconds of pid's threads from /proc/PID/task/*/schedstat
    (nanoseconds on the CPU), or None.  utime + stime come in clock ticks
    (10 ms), too coarse for a helper that runs ~70 ms a second: two reads
    of a 1 s window could be 20 ms, ~30%, off."""
    t = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                t += int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return t / 1e9


def cpu_parts(root, pids, helper):
    """(all CPU seconds, the helper's CPU seconds, helper pids) of a
    process tree.  The helper is the child named helper (/proc/PID/comm):
    vmgate's supervised vmgate-signer; its time is read from schedstat
    when it can be (run_seconds).  A helper that ended and was reaped left
    its CPU in root's cutime + cstime, which counts for it, so that a
    restart inside a window loses nothing."""
    total = hcpu = 0.0
    seen = []
    for p in pids:
        st = proc_stat(p)
        if not st:
            continue
        comm, fields = st
        c = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime
        total += c
        if p == root:
            reaped = (int(fields[13]) + int(fields[14])) / CLK_TCK
            total += reaped
            hcpu += reaped
        elif comm == helper:
            rs = run_seconds(p)
            if rs is not None:
                total += rs - c
                c = rs
            hcpu += c
            seen.append(p)
    return total, hcpu, seen


def rss_kib(pids):
    t = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        t += int(line.split()[1])
        except OSError:
            pass
    return t


def fd_count(pids):
    n = 0
    for p in pids:
        try:
            n += len(os.listdir(f"/proc/{p}/fd"))
        except OSError:
            pass
    return n


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def wait_port(port, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with socket.create_connection(("::1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def wait_port_free(port, timeout=10.0):
    """True once nothing accepts on [::1]:port: a proxy stopped may leave
    a child holding its listener for a moment, and the next proxy's
    wait_port would take that for its own."""
    end = time.time() + timeout
    while time.time() < end:
        try:
            with socket.create_connection(("::1", port), timeout=0.5):
                pass
        except OSError:
            return True
        time.sleep(0.05)
    return False


class Daemon:
    """A process we started, pinned to a CPU; stopped by its own pid.
    helper: the comm of a child whose CPU is reported apart (cpu())."""

    def __init__(self, name, argv, cpu, logpath, env=None, helper=None):
        self.name, self.logpath, self.helper = name, logpath, helper
        self.last_pids, self.helpers_seen = [], set()
        self.logf = open(logpath, "ab")
        self.p = subprocess.Popen(["taskset", "-c", cpu] + argv,
                                  stdout=self.logf, stderr=self.logf,
                                  stdin=subprocess.DEVNULL, env=env,
                                  preexec_fn=raise_nofile)

    def alive(self):
        return self.p.poll() is None

    def pids(self):
        return proc_tree(self.p.pid) if self.alive() else []

    def cpu(self):
        """(CPU seconds of the whole tree, of which the helper's); without
        a helper, the tree's alone as before."""
        pids = self.pids() or self.last_pids
        self.last_pids = pids
        if not self.helper:
            return cpu_seconds(pids), 0.0
        total, hcpu, seen = cpu_parts(self.p.pid, pids, self.helper)
        self.helpers_seen.update(seen)
        return total, hcpu

    def stop(self):
        if self.alive():
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                for q in reversed(proc_tree(self.p.pid)):
                    try:
                        os.kill(q, signal.SIGKILL)
                    except OSError:
                        pass
                self.p.wait(5)
        self.logf.close()
        return self.p.returncode


class CpuBudget:
    """A CPU cgroup of our own whose processes together get at most pct%
    of one core: cgroup v1's cpu controller (cpu.cfs_quota_us) or, where
    the root already delegates cpu, v2's cpu.max.  hold() moves a process
    tree in (its children, a restarted signer too, are born inside);
    remove() when they have ended.  self.why says why there is none."""

    V1 = "/sys/fs/cgroup/cpu"
    V2 = "/sys/fs/cgroup"

    def __init__(self, pct):
        self.path, self.why = None, None
        name = f"vmgate-bench-{os.getpid()}"
        quota = max(1000, pct * CPU_BUDGET_PERIOD_US // 100)
        try:
            if os.path.exists(os.path.join(self.V1, "cpu.cfs_quota_us")):
                self.path, self.v2 = os.path.join(self.V1, name), False
                os.mkdir(self.path)
                write(os.path.join(self.path, "cpu.cfs_period_us"),
                      str(CPU_BUDGET_PERIOD_US))
                write(os.path.join(self.path, "cpu.cfs_quota_us"), str(quota))
            elif "cpu" in read_text(os.path.join(
                    self.V2, "cgroup.subtree_control")).split():
                self.path, self.v2 = os.path.join(self.V2, name), True
                os.mkdir(self.path)
                write(os.path.join(self.path, "cpu.max"),
                      f"{quota} {CPU_BUDGET_PERIOD_US}")
            else:
                self.why = ("no CPU cgroup controller here (cgroup v1 cpu or "
                            "v2 with cpu delegated at the root)")
        except OSError as e:
            self.why = f"cannot make a CPU cgroup: {e}"
            self.remove()

    def hold(self, pids):
        """Move pids in; None, or why not (a process gone meanwhile is no
        reason)."""
        for pid in pids:
            try:
                write(os.path.join(self.path, "cgroup.procs"), str(pid))
            except ProcessLookupError:
                pass
            except OSError as e:
                return f"cannot move pid {pid} into {self.path}: {e}"
        return None

    def throttled_s(self):
        """Seconds the group was held back by its quota so far."""
        key, scale = (("throttled_usec", 1e6) if self.v2
                      else ("throttled_time", 1e9))
        for line in read_text(os.path.join(self.path, "cpu.stat")).splitlines():
            k, _, v = line.partition(" ")
            if k == key:
                return int(v) / scale
        return 0.0

    def remove(self):
        """rmdir the group; its processes must have ended (wait a little
        for the last to be reaped)."""
        if not self.path:
            return
        deadline = time.monotonic() + 5
        while True:
            try:
                os.rmdir(self.path)
                break
            except FileNotFoundError:
                break
            except OSError:
                if time.monotonic() > deadline:
                    log(f"bench: could not remove {self.path}")
                    break
                time.sleep(0.05)
        self.path = None


def read_text(path):
    with open(path) as f:
        return f.read()


# ----------------------------------------------------------------- configs

def backend_conf(tmp, www, port=BACKEND_PORT, sub="backend", workers=1):
    """The nginx backend.  workers > 1 (the W4 scale backend): a master and
    that many workers, each with its own reuseport listening socket."""
    t = os.path.join(tmp, sub)
    os.makedirs(t, exist_ok=True)
    master = "on" if workers > 1 else "off"
    reuse = " reuseport" if workers > 1 else ""
    return f"""\
worker_processes {workers};
master_process {master};
daemon off;
pid {t}/nginx.pid;
error_log {t}/error.log warn;
worker_rlimit_nofile 20000;
events {{ worker_connections 19500; }}
http {{
  access_log off;
  client_body_temp_path {t}/body;
  proxy_temp_path {t}/proxy;
  fastcgi_temp_path {t}/fastcgi;
  uwsgi_temp_path {t}/uwsgi;
  scgi_temp_path {t}/scgi;
  keepalive_requests 100000000;
  keepalive_timeout 600s;
  sendfile on;
  tcp_nopush on;
  server {{
    listen [::1]:{port} backlog=4096{reuse};
    root {www};
    location = /tiny   {{ default_type text/plain; return 200 "ok\\n"; }}
    location = /big    {{ default_type application/octet-stream; }}
    location = /upload {{ client_max_body_size 0; client_body_buffer_size 64k;
                          default_type text/plain; return 200 "ok\\n"; }}
  }}
}}
"""


def vmgate_config(d, files, workers=1, max_connections=20000,
                  port=PROXY_PORT, backend_port=BACKEND_PORT, binary=VMGATE):
    """Write d/vmgate.yaml; -> its path.  Keys an older build refuses
    (--check) are dropped."""
    cfg = os.path.join(d, "vmgate.yaml")
    write(cfg, f"""\
workers: {workers}
log_level: {{level}}
listen:
  address: "::1"
  ports: [{port}]
tls:
  certificates:
    - {{ cert: {files['cert']}, key: {files['key']} }}
  alpn: [http/1.1]
domains:
  - suffix: {SUFFIX}
    port_map: {{ {port}: {backend_port} }}{{VM_ERRORS}}
vms:
  - {{ id: {VM_ID}, address: "::1" }}
limits:
  max_connections: {max_connections}
  idle_timeout_ms: 600000
  max_connections_per_ip: 0     # all the load comes from ::1
  drain_timeout_ms: 2000
""".replace("{level}", "warn").replace(
        "{VM_ERRORS}", "\n    vm_errors: " + os.environ["BENCH_VM_ERRORS"]
        if os.environ.get("BENCH_VM_ERRORS") else ""))
    # Older vmgate builds lack some limits keys: drop what --check refuses.
    for key in ("max_connections_per_ip", "drain_timeout_ms"):
        r = subprocess.run([binary, "--check", "-c", cfg],
                           capture_output=True, text=True)
        if r.returncode == 0:
            break
        if key in r.stdout + r.stderr:
            write(cfg, "".join(l for l in open(cfg) if key not in l))
    return cfg


def proxy_setup(name, tmp, files):
    """-> (argv, env) for the proxy `name`; configs written into tmp/name."""
    d = os.path.join(tmp, name)
    os.makedirs(d, exist_ok=True)
    if name in VMGATES:
        binary = VMGATE_BUILDS[name]["bin"]
        cfg = vmgate_config(d, files, binary=binary)
        write(os.path.join(d, "vmgate-info.yaml"),
              open(cfg).read().replace("log_level: warn", "log_level: info"))
        return [binary, "-c", cfg], None
    if name == "haproxy":
        cfg = os.path.join(d, "haproxy.cfg")
        write(cfg, f"""\
global
  nbthread 1
  maxconn 9900
  pidfile {d}/haproxy.pid
  ssl-default-bind-options ssl-min-ver TLSv1.3
  ssl-default-bind-ciphersuites TLS_AES_128_GCM_SHA256
  ssl-default-bind-curves X25519
defaults
  mode tcp
  timeout connect 5s
  timeout client 600s
  timeout server 600s
frontend fe
  bind [::1]:{PROXY_PORT} ssl crt {files['combined']} alpn http/1.1
  default_backend be
backend be
  server vm1 [::1]:{BACKEND_PORT}
""")
        return ["haproxy", "-db", "-f", cfg], None
    if name == "nginx":
        cfg = os.path.join(d, "nginx.conf")
        write(cfg, f"""\
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
worker_rlimit_nofile 20000;
events {{ worker_connections 19900; }}
stream {{
  server {{
    listen [::1]:{PROXY_PORT} ssl backlog=4096;
    ssl_certificate {files['cert']};
    ssl_certificate_key {files['key']};
    ssl_protocols TLSv1.3;
    ssl_ecdh_curve X25519;
    ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256;
    ssl_alpn http/1.1;
    proxy_pass [::1]:{BACKEND_PORT};
    proxy_timeout 600s;
  }}
}}
""")
        return ["nginx", "-p", d, "-e", os.path.join(d, "error.log"),
                "-c", cfg], None
    if name == "hitch":
        cfg = os.path.join(d, "hitch.conf")
        write(cfg, f"""\
frontend = "[::1]:{PROXY_PORT}"
backend = "[::1]:{BACKEND_PORT}"
pem-file = "{files['combined']}"
workers = 1
daemon = off
backlog = 4096
tls-protos = TLSv1.3
ciphersuites = "TLS_AES_128_GCM_SHA256"
ecdh-curve = "X25519"
alpn-protos = "http/1.1"
syslog = off
log-level = 0
user = "nobody"
group = "nogroup"
""")
        return ["hitch", "--config=" + cfg], None
    raise ValueError(name)


# ----------------------------------------------------------------- load

class Runner:
    def __init__(self, tmp, tlsload):
        self.tmp, self.tlsload = tmp, tlsload
        self.client_env = dict(os.environ,
                               OPENSSL_CONF=os.path.join(tmp, "openssl-client.cnf"))

    def tls(self, mode, conc, dur, path="/tiny", port=PROXY_PORT, rate=0):
        argv = ["taskset", "-c", LOAD_CPU, self.tlsload, mode, "-a", "::1",
                "-p", str(port), "-s", SNI, "-c", str(conc),
                "-d", str(dur), "-P", path] + (["-r", str(rate)] if rate else [])
        r = subprocess.run(argv, capture_output=True, text=True,
                           timeout=dur + 30)
        try:
            return json.loads(r.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            return {"ok": 0, "errors": 1, "rate": 0, "resumed": 0,
                    "first_error": "tlsload failed: " + r.stderr[-300:]}

    def wrk(self, path, conc, dur, script):
        url = f"https://{SNI}:{PROXY_PORT}{path}"
        argv = ["taskset", "-c", LOAD_CPU, "unshare", "--mount", "sh", "-c",
                'mount --bind "$0" /etc/hosts && exec "$@"',
                os.path.join(self.tmp, "hosts"),
                "wrk", "-t1", f"-c{conc}", f"-d{max(1, int(round(dur)))}s", "--latency",
                "--timeout", "10s", "-s", os.path.join(self.tmp, script), url]
        r = subprocess.run(argv, capture_output=True, text=True,
                           timeout=dur + 30, env=self.client_env)
        m = re.search(r"JSONRESULT (\{.*\})", r.stdout)
        if not m:
            return {"requests": 0, "bytes": 0, "duration_us": 1, "errors": 1,
                    "status_errors": 0, "p50_us": 0, "p99_us": 0,
                    "first_error": (r.stdout + r.stderr)[-300:]}
        return json.loads(m.group(1))

    def probe_openssl(self):
        """What an OpenSSL client (wrk's settings) negotiates."""
        try:
            r = subprocess.run(
                ["openssl", "s_client", "-connect", f"[::1]:{PROXY_PORT}",
                 "-servername", SNI, "-brief", "-alpn", "http/1.1"],
                input="", capture_output=True, text=True, timeout=10,
                env=self.client_env)
        except subprocess.TimeoutExpired:
            return "timeout"
        out = r.stdout + r.stderr
        v = re.search(r"Protocol version: (\S+)", out)
        c = re.search(r"Ciphersuite: (\S+)", out)
        k = re.search(r"(?:Server|Peer) Temp Key: ([^,\n]+)", out)
        return " ".join(x.group(1) for x in (v, c, k) if x) or out[-200:]


def cpu_busy_total(cpu):
    """Busy seconds of one CPU since boot (/proc/stat), all processes."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{cpu} "):
                v = [int(x) for x in line.split()[1:]]
                return (sum(v[:8]) - v[3] - v[4]) / CLK_TCK
    return 0.0


NOISE = []   # per measured run: CPU-0 busy fraction not spent in the proxy


def measured(proxy, fn):
    """Run fn() and return (result, cpu_seconds, wall_seconds,
    helper_cpu_seconds): the CPU of the proxy's whole process tree, and of
    that the part its helper (vmgate's signer) spent."""
    b0 = cpu_busy_total(PROXY_CPU)
    (c0, h0), t0 = proxy.cpu(), time.monotonic()
    res = fn()
    (c1, h1), t1 = proxy.cpu(), time.monotonic()
    b1 = cpu_busy_total(PROXY_CPU)
    NOISE.append(max(0.0, (b1 - b0) - (c1 - c0)) / (t1 - t0))
    return res, c1 - c0, t1 - t0, h1 - h0


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def run_proxy(name, tmp, files, runner, notes):
    out = {"name": name}
    NOISE.clear()
    argv, env = proxy_setup(name, tmp, files)
    logpath = os.path.join(tmp, name, "stderr.log")

    # vmgate's signer child (KEY_SIGNER) is looked for in both builds: its
    # CPU is counted apart, and found where none should be, it is noted.
    helper = SIGNER_COMM if name in VMGATES else None
    signer_pids = set()

    def start(argv=argv):
        p = Daemon(name, argv, PROXY_CPU, logpath, env, helper)
        if not wait_port(PROXY_PORT) or not p.alive():
            p.stop()
            raise RuntimeError(f"{name} did not start; see {logpath}")
        return p

    def check(p, what):
        p.cpu()                  # notes a signer pid while it runs
        signer_pids.update(p.helpers_seen)
        if not p.alive():
            notes.append(f"{name}: exited during {what} (status "
                         f"{p.p.returncode}); log tail: " + tail(logpath))
            return start()
        return p

    # Once at log level info (vmgate only): which cipher/group, and that
    # resumption really happens.
    # With a signer, its pid is in vmgate's `signer pid=` line at info and
    # must be the child found under /proc.
    if name in VMGATES:
        p = start([argv[0], "-c", os.path.join(tmp, name, "vmgate-info.yaml")])
        runner.tls("hs", 1, 0.3)
        runner.tls("resume", 1, 0.3)
        p.cpu()
        info_seen = sorted(p.helpers_seen)
        p.stop()
        text = open(logpath, errors="replace").read()
        closes = [l for l in text.splitlines() if " close " in l]
        m = re.search(r"\bsigner pid=(\d+)", text)
        out["info_check"] = {
            "close_lines": len(closes),
            "resumed_1": sum("resumed=1" in l for l in closes),
            "sample": closes[-1][:400] if closes else tail(logpath),
            "signer_log_pid": int(m.group(1)) if m else None,
            "signer_proc_pids": info_seen}
        os.rename(logpath, logpath + ".info")
        if VMGATE_BUILDS[name]["key_signer"] != bool(m or info_seen):
            notes.append(f"{name}: {VMGATE_BUILDS[name]['bin']}: KEY_SIGNER="
                         f"{'y' if VMGATE_BUILDS[name]['key_signer'] else 'n'}"
                         " in its config.h, but a signer was "
                         f"{'found' if m or info_seen else 'not found'} "
                         "(log line / child process)")
        elif m and info_seen and int(m.group(1)) not in info_seen:
            notes.append(f"{name}: the log's signer pid={m.group(1)} is not "
                         f"the child found under /proc ({info_seen})")

    p = start()
    out["version"] = proxy_version(name)
    out["negotiated_openssl"] = runner.probe_openssl()
    pr = runner.tls("hs", 1, 0.3)
    out["negotiated_boringssl"] = {k: pr.get(k) for k in
                                   ("version", "cipher", "group", "alpn")}
    if not pr.get("ok"):
        notes.append(f"{name}: probe failed: {pr.get('first_error')}")

    # W1 full handshakes, W5 resumed handshakes.  cpu_us_per is the whole
    # proxy's (vmgate: with its signer); for vmgate, main_ the vmgate
    # process's and signer_ the signer's part of it (each a median).
    for key, mode, conc in (("w1", "hs", W1_CONC), ("w5", "resume", W5_CONC)):
        if key not in WORKLOADS:
            continue
        reps = []
        for _ in range(REPS):
            r, cpu, wall, scpu = measured(p, lambda: runner.tls(mode, conc, DUR))
            ok = r["ok"]
            signed = bool(p.helpers_seen)
            reps.append({"rate": r["rate"], "ok": ok,
                         "errors": r["errors"], "resumed": r.get("resumed", 0),
                         "cpu_us_per": cpu * 1e6 / ok if ok else None,
                         "main_cpu_us_per": ((cpu - scpu) * 1e6 / ok
                                             if ok and helper else None),
                         "signer_cpu_us_per": (scpu * 1e6 / ok
                                               if ok and signed else None),
                         "cpu_busy": cpu / wall,
                         "signer_cpu_busy": scpu / wall if signed else None,
                         "first_error": r.get("first_error", "")})
            p = check(p, key)
        out[key] = summarize(reps, ["rate", "cpu_us_per", "main_cpu_us_per",
                                    "signer_cpu_us_per", "cpu_busy",
                                    "signer_cpu_busy"])
        out[key]["resumed_frac"] = (sum(x["resumed"] for x in reps) /
                                    max(1, sum(x["ok"] for x in reps)))
        errs = [x for x in reps if x["errors"]]
        if errs:
            out[key]["errors"] = sum(x["errors"] for x in reps)
            out[key]["first_error"] = errs[0]["first_error"]

    # W2 keep-alive small requests
    reps = []
    for _ in range(REPS if "w2" in WORKLOADS else 0):
        r, cpu, wall, _ = measured(p, lambda: runner.wrk("/tiny", W2_CONC, DUR,
                                                         "report.lua"))
        secs = r["duration_us"] / 1e6
        reps.append({"rate": r["requests"] / secs,
                     "p50_ms": r["p50_us"] / 1e3, "p99_ms": r["p99_us"] / 1e3,
                     "cpu_us_per": cpu * 1e6 / r["requests"] if r["requests"] else None,
                     "cpu_busy": cpu / wall, "errors": r["errors"] + r["status_errors"],
                     "first_error": r.get("first_error", "")})
        p = check(p, "w2")
    if reps:
        out["w2"] = summarize(reps, ["rate", "p50_ms", "p99_ms", "cpu_us_per",
                                     "cpu_busy"])
        add_errors(out["w2"], reps)

    # W3 bulk: download and upload
    for key, path, script in (("w3_down", "/big", "report.lua"),
                              ("w3_up", "/upload", "upload.lua")):
        if "w3" not in WORKLOADS:
            break
        reps = []
        for _ in range(REPS):
            r, cpu, wall, _ = measured(p, lambda: runner.wrk(path, W3_CONC, DUR,
                                                             script))
            secs = r["duration_us"] / 1e6
            nbytes = r["bytes"] if key == "w3_down" else r["requests"] * UPLOAD_BYTES
            reps.append({"mbps": nbytes / secs / 1e6,
                         "cpu_s_per_gb": cpu / (nbytes / 1e9) if nbytes else None,
                         "cpu_busy": cpu / wall,
                         "errors": r["errors"] + r["status_errors"],
                         "first_error": r.get("first_error", "")})
            p = check(p, key)
        out[key] = summarize(reps, ["mbps", "cpu_s_per_gb", "cpu_busy"])
        add_errors(out[key], reps)
    p.cpu()
    signer_pids.update(p.helpers_seen)
    p.stop()
    out["log_tail"] = log_summary(logpath)
    out["cpu0_other_busy"] = med(NOISE)
    if helper:
        out["signer_pids"] = sorted(signer_pids)
        if len(signer_pids) > 1:
            notes.append(f"{name}: the signer ran as {len(signer_pids)} "
                         f"processes (restarted): {sorted(signer_pids)}")
    if "w4" not in WORKLOADS:
        return out

    # W4 idle connections, on a fresh process
    p = start()
    runner.tls("hs", 1, 0.2)
    time.sleep(0.5)
    base = rss_kib(p.pids())
    base_fds = fd_count(p.pids())
    out["w4"] = {"base_rss_kib": base, "points": []}
    ll = subprocess.Popen(["taskset", "-c", LOAD_CPU, runner.tlsload, "idle",
                           "-a", "::1", "-p", str(PROXY_PORT), "-s", SNI,
                           "-c", "64", "-T", "150"],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          text=True, preexec_fn=raise_nofile)
    try:
        for n in IDLE_COUNTS:
            c0 = cpu_seconds(p.pids())
            ll.stdin.write(f"{n}\n")
            ll.stdin.flush()
            line = ll.stdout.readline()
            c1 = cpu_seconds(p.pids())
            try:
                st = json.loads(line)
            except ValueError:
                st = {"target": n, "established": 0, "errors": -1,
                      "first_error": "idle client died"}
            time.sleep(1.0)   # let the proxy settle
            rss = rss_kib(p.pids())
            est = st.get("established", 0)
            out["w4"]["points"].append({
                "target": n, "established": est, "errors": st.get("errors"),
                "first_error": st.get("first_error", ""),
                "rss_kib": rss, "alive": p.alive(),
                "kib_per_conn": (rss - base) / est if est else None,
                "cpu_us_per_conn": ((c1 - c0) * 1e6 /
                                    max(1, est - (out["w4"]["points"][-1]["established"]
                                                  if out["w4"]["points"] else 0)))})
            if not p.alive():
                notes.append(f"{name}: exited during w4 at {n} connections; "
                             "log tail: " + tail(logpath))
                break
        ll.stdin.write("q\n")
        ll.stdin.flush()
        ll.wait(30)
        # How long the proxy takes to let go of everything once the client
        # has closed all its connections at once (bounded: 30 s).
        t0 = time.monotonic()
        while (time.monotonic() - t0 < 30 and p.alive() and
               fd_count(p.pids()) > base_fds + 4):
            time.sleep(0.05)
        out["w4"]["teardown_s"] = time.monotonic() - t0
        out["w4"]["fds_left"] = fd_count(p.pids()) - base_fds
    except (OSError, subprocess.TimeoutExpired) as e:
        notes.append(f"{name}: w4 client: {e}")
        ll.kill()
        ll.wait()
    p.stop()
    out["log_tail_w4"] = log_summary(logpath)
    return out


# ----------------------------------------------------------------- W4 scale

def run_w1_rounds(proxies, tmp, files, runner, notes):
    """W1 again, in rounds: {"rounds": [{name: rep}], "order": [[names]]}.
    Each round starts every proxy afresh (its own warm-up of W1_CONC
    handshakes for W1R_WARM_S), measures one DUR of W1, with W1R_RATE one
    DUR at that offered rate (rep["fixed"]), with W1R_BUDGET one DUR with
    the proxy held to that CPU budget (rep["budget"], after a warm-up in
    it), and stops it; the order is rotated by one each round."""
    out = {"rounds": [], "order": []}
    budget = CpuBudget(W1R_BUDGET) if W1R_BUDGET else None
    if budget and budget.why:
        notes.append(f"W1 at a CPU budget of {W1R_BUDGET}%: not measured: "
                     f"{budget.why}")
        budget = None
    try:
        for r in range(W1R_ROUNDS):
            run_w1_round(r, proxies, tmp, files, runner, notes, budget, out)
    finally:
        if budget:
            budget.remove()
    if budget:
        out["budget_pct"] = W1R_BUDGET
    return out


def run_w1_round(r, proxies, tmp, files, runner, notes, budget, out):
    """Round r of run_w1_rounds, appended to out."""
    order = proxies[r % len(proxies):] + proxies[:r % len(proxies)]
    row = {}
    for name in order:
        argv, env = proxy_setup(name, tmp, files)
        logpath = os.path.join(tmp, name, "stderr-w1r.log")
        helper = SIGNER_COMM if name in VMGATES else None
        if not wait_port_free(PROXY_PORT):
            notes.append(f"W1 round {r + 1}: port {PROXY_PORT} still "
                         f"taken before {name}; round skipped for it")
            continue
        p = Daemon(name, argv, PROXY_CPU, logpath, env, helper)
        try:
            if not wait_port(PROXY_PORT) or not p.alive():
                notes.append(f"{name}: did not start for W1 round {r + 1}; "
                             "log tail: " + tail(logpath))
                continue
            runner.tls("hs", W1_CONC, W1R_WARM_S)
            res, cpu, wall, scpu = measured(
                p, lambda: runner.tls("hs", W1_CONC, DUR))
            ok = res["ok"]
            if not ok or not p.alive():
                notes.append(f"{name}: W1 round {r + 1} failed: "
                             f"{res.get('first_error', '')[:200]}")
                continue
            row[name] = {"rate": res["rate"], "cpu_us_per": cpu * 1e6 / ok,
                         "signer_cpu_us_per": (scpu * 1e6 / ok
                                               if p.helpers_seen else None),
                         "cpu_busy": cpu / wall, "errors": res["errors"]}
            if W1R_RATE:
                res, cpu, wall, scpu = measured(
                    p, lambda: runner.tls("hs", W1_CONC, DUR,
                                          rate=W1R_RATE))
                if res["ok"] and p.alive():
                    row[name]["fixed"] = {
                        "rate": res["rate"],
                        "cpu_us_per": cpu * 1e6 / res["ok"],
                        "cpu_busy": cpu / wall}
            why = budget.hold(p.pids()) if budget else "no budget"
            if budget and why:
                notes.append(f"{name}: W1 round {r + 1} at the CPU budget "
                             f"not measured: {why}")
            if not why:
                runner.tls("hs", W1_CONC, W1R_WARM_S)
                t0 = budget.throttled_s()
                res, cpu, wall, scpu = measured(
                    p, lambda: runner.tls("hs", W1_CONC, DUR))
                if res["ok"] and p.alive():
                    row[name]["budget"] = {
                        "rate": res["rate"],
                        "cpu_us_per": cpu * 1e6 / res["ok"],
                        "cpu_busy": cpu / wall, "errors": res["errors"],
                        "throttled_s": budget.throttled_s() - t0}
        finally:
            p.stop()
    out["rounds"].append(row)
    out["order"].append(order)
    log(f"w1 round {r + 1}/{W1R_ROUNDS}: " + ", ".join(
        f"{n} {row[n]['cpu_us_per']:.0f} µs" +
        (f" ({row[n]['fixed']['cpu_us_per']:.0f} µs at {W1R_RATE}/s)"
         if "fixed" in row[n] else "") +
        (f" ({row[n]['budget']['rate']:.0f}/s at {W1R_BUDGET}% CPU)"
         if "budget" in row[n] else "") for n in order if n in row))


def w1r_ratios(w1r, name):
    """Per round: name's CPU per handshake over the cheapest peer's and
    its rate over the fastest peer's, for the rounds that have both."""
    cpu, rate = [], []
    for row in w1r["rounds"]:
        peers = [v for n, v in row.items() if n not in VMGATES]
        if name not in row or not peers:
            continue
        cpu.append(row[name]["cpu_us_per"] /
                   min(v["cpu_us_per"] for v in peers))
        rate.append(row[name]["rate"] / max(v["rate"] for v in peers))
    return cpu, rate


def rounds_table(title, rows, names, higher=False):
    """A table of CPU-µs per full handshake, a line per round (rows:
    [{name: µs}]), with each vmgate build's ratio to the cheapest peer of
    its round (higher: a rate, to the fastest peer's); and those ratios,
    {name: [ratio per round]}."""
    ours = [n for n in names if n in VMGATES]
    lines = [f"| {title} | " + " | ".join(names) + " | " +
             " | ".join(f"{n} / best peer" for n in ours) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(names) + len(ours))) + "|"]
    ratios = {n: [] for n in ours}
    for i, row in enumerate(rows):
        cells = [fmt(row[n]) if n in row else "-" for n in names]
        peers = [v for n, v in row.items() if n not in VMGATES]
        for n in ours:
            if n in row and peers:
                ratios[n].append(row[n] / (max(peers) if higher
                                           else min(peers)))
                cells.append(f"{ratios[n][-1]:.2f}")
            else:
                cells.append("-")
        lines.append(f"| {i + 1} | " + " | ".join(cells) + " |")
    return "\n".join(lines), ratios


def render_w1r_fixed(w1r):
    """The rounds' measurements at one offered rate (BENCH_W1_RATE), with
    each vmgate build's CPU per handshake over the cheapest peer's."""
    rows = [row for row in w1r["rounds"]
            if any("fixed" in v for v in row.values())]
    if not rows:
        return ""
    names = [n for n in PROXIES if any("fixed" in row.get(n, {})
                                       for row in rows)]
    table, ratios = rounds_table(
        f"W1 at {W1R_RATE}/s offered (CPU-µs / full handshake)",
        [{n: row[n]["fixed"]["cpu_us_per"] for n in names
          if "fixed" in row.get(n, {})} for row in rows], names)
    low = min(row[n]["fixed"]["rate"] for row in rows for n in names
              if "fixed" in row.get(n, {}))
    out = ["", table, "",
           f"The lowest rate reached was {low:.0f}/s"
           + (" (below the offered rate: that proxy was at its limit)"
              if low < 0.95 * W1R_RATE else "") + "."]
    for n, r in ratios.items():
        if r:
            out.append(f"At {W1R_RATE} handshakes/s offered to all, {n}: "
                       f"{statistics.median(r):.2f}× the best peer's "
                       f"CPU per full handshake (median; "
                       f"{min(r):.2f}-{max(r):.2f}).")
    return "\n".join(out) + "\n"


def render_w1r_budget(w1r):
    """The rounds' handshakes/s with every proxy held to one CPU budget
    (BENCH_W1_BUDGET), with each vmgate build's over the fastest peer's;
    and those ratios, {name: [ratio per round]}."""
    pct = w1r.get("budget_pct")
    rounds = [{n: v["budget"] for n, v in row.items() if "budget" in v}
              for row in w1r["rounds"]]
    rounds = [b for b in rounds if b]
    if not pct or not rounds:
        return "", {}

    def held(b):     # the budget, not the client, was the limit
        return b["cpu_busy"] >= BUDGET_HELD * pct / 100

    names = [n for n in PROXIES if any(n in b for b in rounds)]
    table, _ = rounds_table(
        f"W1 held to {pct}% of one core (full handshakes/s)",
        [{n: v["rate"] for n, v in b.items()} for b in rounds], names,
        higher=True)
    # A peer the client held back ran below its capacity: its round says
    # nothing about the ratio (ours held back only understates it).
    ratios = {}
    for b in rounds:
        peers = [v for n, v in b.items() if n not in VMGATES]
        if not peers or not all(held(v) for v in peers):
            continue
        for n in b:
            if n in VMGATES:
                ratios.setdefault(n, []).append(
                    b[n]["rate"] / max(v["rate"] for v in peers))
    loose = sorted({f"{n} (round {i + 1}: {v['cpu_busy']:.2f})"
                    for i, b in enumerate(rounds) for n, v in b.items()
                    if not held(v)})
    cpu = {n: [b[n]["cpu_us_per"] for b in rounds if n in b] for n in names}
    out = ["", table, "",
           f"Each proxy's process tree in a CPU cgroup with a quota of {pct}% "
           f"of one core ({pct * CPU_BUDGET_PERIOD_US // 100000} ms every "
           f"{CPU_BUDGET_PERIOD_US // 1000} ms), after its unconstrained "
           "measurement and 0.5 s of warm-up in it: the proxy, not the "
           "one-core client, is the limit, so this is each proxy's "
           "handshakes/s on equal CPU. CPU-µs per full handshake in it "
           "(median): " + ", ".join(f"{n} {statistics.median(v):.0f}"
                                   for n, v in cpu.items() if v) + "."]
    if loose:
        out.append(f"Not held at the budget (busy below {BUDGET_HELD:g} of "
                   "it: the client was the limit, so the rate is a lower "
                   "bound; a round where a peer was not held is left out "
                   "of the ratios): " + ", ".join(loose) + ".")
    return "\n".join(out) + "\n", ratios


def render_w1r(w1r):
    """The rounds as a table (CPU-µs per full handshake, each proxy's in
    each round) and issue 14's targets judged on the ratios within each
    round."""
    if not w1r or not w1r["rounds"]:
        return ""
    names = [n for n in PROXIES if any(n in row for row in w1r["rounds"])]
    ours = [n for n in names if n in VMGATES]
    table, _ = rounds_table(
        "W1 round (proxy CPU-µs / full handshake)",
        [{n: v["cpu_us_per"] for n, v in row.items()}
         for row in w1r["rounds"]], names)
    out = [f"W1 in rounds ({len(w1r['rounds'])} rounds; in each, every proxy "
           f"started afresh, warmed up {W1R_WARM_S:g} s and measured for "
           f"{DUR:g} s, in an order rotated each round):", "",
           table, ""]
    budget, held = render_w1r_budget(w1r)
    for n in ours:
        cpu, rate = w1r_ratios(w1r, n)
        if not cpu:
            continue
        mc, mr = statistics.median(cpu), statistics.median(rate)
        line = (
            f"Issue 14's W1 target from the rounds, {n}: total CPU per full "
            f"handshake {mc:.2f}× the best peer's in the same round (median; "
            f"{min(cpu):.2f}-{max(cpu):.2f}; target ≤ 0.55×: "
            f"{'met' if mc <= 0.55 else 'missed'}; rounds within it: "
            f"{sum(c <= 0.55 for c in cpu)} of {len(cpu)}); "
            "handshakes/s ")
        hr = held.get(n)
        if hr:
            mh = statistics.median(hr)
            line += (
                f"on equal CPU ({w1r['budget_pct']}% of one core each) "
                f"{mh:.2f}× the fastest peer's (median; {min(hr):.2f}-"
                f"{max(hr):.2f}; target ≥ 1.3×: "
                f"{'met' if mh >= 1.3 else 'missed'}; rounds within it: "
                f"{sum(h >= 1.3 for h in hr)} of {len(hr)}), "
                f"{mr:.2f}× at the one-core client's limit.")
        else:
            line += (f"{mr:.2f}× (median; {min(rate):.2f}-{max(rate):.2f}; "
                     f"target ≥ 1.3×: {'met' if mr >= 1.3 else 'missed'}; "
                     "at the one-core client's limit).")
        out.append(line)
    return "\n".join(out) + "\n" + budget + render_w1r_fixed(w1r)


def tcp6_sockets(ports):
    """Loopback TCP sockets by local port, from /proc/net/tcp6:
    {port: {"established": n, "close_wait": n}}, or None if unreadable.
    Both ends of a loopback connection are listed; the local port picks
    the accepting end (vmgate's client sockets, nginx's VM-side sockets)."""
    want = {f"{p:04X}": p for p in ports}
    out = {p: {"established": 0, "close_wait": 0} for p in ports}
    try:
        with open("/proc/net/tcp6") as f:
            next(f, None)
            for line in f:
                parts = line.split(None, 4)
                if len(parts) < 4:
                    continue
                port = want.get(parts[1].rsplit(":", 1)[-1])
                if port is None:
                    continue
                if parts[3] == "01":
                    out[port]["established"] += 1
                elif parts[3] == "08":
                    out[port]["close_wait"] += 1
    except OSError:
        return None
    return out


def read_json_lines(procs, bufs, deadline):
    """One JSON line from each process's stdout (binary, unbuffered), or
    None for a process that gave none before the deadline (or ended)."""
    got = [None] * len(procs)
    pending = {p.stdout.fileno(): i for i, p in enumerate(procs)}
    for fd, i in list(pending.items()):     # a line already buffered
        if b"\n" in bufs[i]:
            line, bufs[i] = bufs[i].split(b"\n", 1)
            got[i] = parse_json(line)
            del pending[fd]
    while pending:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select(list(pending), [], [], left)
        for fd in ready:
            i = pending[fd]
            chunk = os.read(fd, 65536)
            if not chunk:                   # the process ended
                del pending[fd]
                continue
            bufs[i] += chunk
            if b"\n" in bufs[i]:
                line, bufs[i] = bufs[i].split(b"\n", 1)
                got[i] = parse_json(line)
                del pending[fd]
    return got


def parse_json(line):
    try:
        return json.loads(line)
    except ValueError:
        return {"established": 0, "errors": -1,
                "first_error": "tlsload: not JSON: " +
                line[:200].decode(errors="replace")}


def run_scale(tmp, files, runner, notes):
    """W4 scale: one vmgate with SCALE_WORKERS workers; idle client+VM
    pairs added SCALE_STEP at a time up to SCALE_TARGET, by SCALE_CLIENTS
    tlsload idle processes (each under its own open-file limit); after each
    step the pairs held, the proxy's RSS and open fds.  Stops at the first
    step that falls more than 1% short.  Every process it starts is stopped
    by pid before it returns."""
    out = {"vmgate": VMGATE, "workers": SCALE_WORKERS,
           "max_connections": SCALE_MAX_CONNECTIONS,
           "clients": SCALE_CLIENTS, "target": SCALE_TARGET,
           "step": SCALE_STEP, "step_timeout_s": SCALE_STEP_S,
           "budget_s": SCALE_BUDGET_S,
           "nofile_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[1],
           "steps": []}
    try:
        out["ephemeral_ports"] = open(
            "/proc/sys/net/ipv4/ip_local_port_range").read().split()
    except OSError:
        pass
    for port in (SCALE_BACKEND_PORT, SCALE_PROXY_PORT):
        if wait_port(port, 0.2):
            out["skipped"] = f"port {port} is already in use"
            return out
    d = os.path.join(tmp, "vmgate-scale")
    os.makedirs(d, exist_ok=True)
    cfg = vmgate_config(d, files, SCALE_WORKERS, SCALE_MAX_CONNECTIONS,
                        SCALE_PROXY_PORT, SCALE_BACKEND_PORT)
    r = subprocess.run([VMGATE, "--check", "-c", cfg], capture_output=True,
                       text=True)
    if r.returncode:
        out["skipped"] = ("vmgate --check refused the config: " +
                          (r.stdout + r.stderr).strip()[-300:])
        return out
    bconf = os.path.join(tmp, "backend-scale.conf")
    berr = os.path.join(tmp, "backend-scale", "error.log")
    write(bconf, backend_conf(tmp, files["www"], SCALE_BACKEND_PORT,
                              "backend-scale", SCALE_BACKEND_WORKERS))
    logpath = os.path.join(d, "stderr.log")
    backend = vm = None
    clients, client_logs = [], []
    ports = [SCALE_PROXY_PORT, SCALE_BACKEND_PORT]
    try:
        backend = Daemon("backend-scale", ["nginx", "-p", tmp, "-e", berr,
                                           "-c", bconf],
                         ALL_CPUS, os.path.join(tmp, "backend-scale.stderr"))
        if not wait_port(SCALE_BACKEND_PORT) or not backend.alive():
            raise RuntimeError("scale backend (nginx) did not start: " +
                               tail(berr))
        vm = Daemon("vmgate-scale", [VMGATE, "-c", cfg], PROXY_CPU, logpath)
        if not wait_port(SCALE_PROXY_PORT) or not vm.alive():
            raise RuntimeError("vmgate did not start: " + tail(logpath))
        pr = runner.tls("hs", 1, 0.2, port=SCALE_PROXY_PORT)
        if not pr.get("ok"):
            raise RuntimeError(f"probe failed: {pr.get('first_error')}")
        time.sleep(0.5)
        out["base_rss_kib"] = rss_kib(vm.pids())
        out["base_fds"] = fd_count(vm.pids())
        argv = ["taskset", "-c", ALL_CPUS, runner.tlsload, "idle",
                "-a", "::1", "-p", str(SCALE_PROXY_PORT), "-s", SNI,
                "-c", "64", "-g", str(SCALE_STEP_S),
                "-T", str(SCALE_BUDGET_S + 60)]
        for i in range(SCALE_CLIENTS):
            lf = open(os.path.join(d, f"tlsload-{i}.stderr"), "ab")
            client_logs.append(lf)
            clients.append(subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=lf, bufsize=0, preexec_fn=raise_nofile))
        bufs = [b""] * len(clients)
        totals = list(range(SCALE_STEP, SCALE_TARGET, SCALE_STEP)) + [SCALE_TARGET]
        t_begin = time.monotonic()
        for total in totals:
            if time.monotonic() - t_begin + SCALE_STEP_S > SCALE_BUDGET_S:
                out["stopped"] = {"at": total, "reason":
                                  f"time budget ({SCALE_BUDGET_S} s) spent"}
                break
            n = len(clients)
            shares = [total // n + (1 if i < total % n else 0)
                      for i in range(n)]
            if max(shares) > SCALE_CLIENT_MAX:
                out["stopped"] = {"at": total, "reason":
                                  f"more than {SCALE_CLIENT_MAX} per client"}
                break
            t0, c0 = time.monotonic(), cpu_seconds(vm.pids())
            cl0 = cpu_user_sys([cl.pid for cl in clients])
            for cl, k in zip(clients, shares):
                try:
                    cl.stdin.write(f"{k}\n".encode())
                    cl.stdin.flush()
                except (OSError, ValueError):
                    pass
            lines = read_json_lines(clients, bufs, t0 + SCALE_STEP_S + 15)
            wall = time.monotonic() - t0
            c1 = cpu_seconds(vm.pids())
            cl1 = cpu_user_sys([cl.pid for cl in clients])
            time.sleep(1.0)                 # let the proxy settle
            est = sum(x.get("established", 0) for x in lines if x)
            errs = sum(max(0, x.get("errors", 0)) for x in lines if x)
            first = next((x["first_error"] for x in lines
                          if x and x.get("first_error")), "")
            silent = [i for i, x in enumerate(lines) if x is None]
            if silent:
                first = (f"tlsload {silent} gave no answer within "
                         f"{SCALE_STEP_S + 15} s" + ("; " + first if first else ""))
            pids = vm.pids()
            sk = tcp6_sockets(ports)
            st = {"target": total, "established": est, "errors": errs,
                  "first_error": first, "seconds": round(wall, 2),
                  "per_client": [x.get("established") if x else None
                                 for x in lines],
                  "alive": vm.alive(), "rss_kib": rss_kib(pids),
                  "fds": fd_count(pids),
                  "cpu_s": round(c1 - c0, 2),
                  "clients_user_s": round(cl1[0] - cl0[0], 2),
                  "clients_sys_s": round(cl1[1] - cl0[1], 2)}
            if sk:
                st["proxy_client_sockets"] = sk[SCALE_PROXY_PORT]["established"]
                st["backend_vm_sockets"] = sk[SCALE_BACKEND_PORT]["established"]
                st["pairs"] = min(est, st["backend_vm_sockets"])
            else:
                st["pairs"] = est
            out["steps"].append(st)
            log(f"scale: {total:,} tried: {est:,} established, "
                f"{st['pairs']:,} pairs, vmgate fds {st['fds']:,}, "
                f"RSS {st['rss_kib'] / 1024:.1f} MiB, {wall:.1f} s"
                + (f"; first error: {first}" if first else ""))
            if not st["alive"]:
                out["stopped"] = {"at": total, "reason":
                                  f"vmgate exited (status {vm.p.returncode}); "
                                  "log tail: " + tail(logpath)}
                break
            if st["pairs"] < total * 0.99:
                out["stopped"] = {"at": total, "reason": first or
                                  "fewer pairs than connections established "
                                  f"({st['pairs']} of {est})"}
                break
        if out.get("stopped"):
            # what vmgate said about it: its first warning or error
            first_log = log_summary(logpath).get("first") or []
            if first_log:
                out["stopped"]["proxy_log"] = first_log[0][:300]
        out["steps_s"] = round(time.monotonic() - t_begin, 1)
        held = [x for x in out["steps"] if x["alive"]]
        if held:
            best = max(held, key=lambda x: x["pairs"])
            out["pairs"] = best["pairs"]
            out["rss_kib"] = best["rss_kib"]
            out["fds"] = best["fds"]
            out["kib_per_pair"] = ((best["rss_kib"] - out["base_rss_kib"]) /
                                   best["pairs"] if best["pairs"] else None)
    except Exception as e:               # report what was measured so far
        out["failed"] = f"{type(e).__name__}: {e}"
    finally:
        # The clients close everything on "q" (else on EOF, else -T).
        for cl in clients:
            try:
                cl.stdin.write(b"q\n")
                cl.stdin.close()
            except (OSError, ValueError):
                pass
        end = time.monotonic() + 30
        for cl in clients:
            try:
                cl.wait(max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                cl.kill()
                cl.wait()
            cl.stdout.close()
        for lf in client_logs:
            lf.close()
        # How long vmgate takes to close every client and VM socket once
        # the clients have closed theirs (bounded: 30 s).
        if out["steps"] and vm and vm.alive():
            t0 = time.monotonic()
            while time.monotonic() - t0 < 30 and vm.alive():
                sk = tcp6_sockets(ports)
                if not sk or (sk[SCALE_BACKEND_PORT]["established"] == 0 and
                              sum(sk[SCALE_PROXY_PORT].values()) == 0):
                    break
                time.sleep(0.1)
            out["teardown_s"] = round(time.monotonic() - t0, 2)
        if vm:
            out["exit_status"] = vm.stop()
            out["log"] = log_summary(logpath)
        if backend:
            backend.stop()
    if out.get("failed"):
        notes.append(f"w4 scale: {out['failed']}")
    if out.get("stopped"):
        notes.append(f"w4 scale: stopped at the {out['stopped']['at']:,} step: "
                     f"{out['stopped']['reason'][:300]}")
    lg = out.get("log") or {}
    if lg.get("warn_or_error"):
        notes.append(f"w4 scale: vmgate logged {lg['warn_or_error']} "
                     "warning/error lines; first: " +
                     " | ".join(lg["first"][:2])[:300])
    return out


def render_scale(sc):
    """The W4 scale paragraph under the table ("" if it did not run)."""
    if not sc or sc.get("skipped"):
        return ""
    head = f"W4 scale (vmgate, {sc['workers']} workers): "
    if sc.get("pairs") is None:
        return head + "no result (" + (sc.get("failed") or
                                       (sc.get("stopped") or {}).get("reason", "?")) + ").\n"
    kib = sc.get("kib_per_pair")
    txt = (head + f"{sc['pairs']:,} pairs held at once (target "
           f"{sc['target']:,}); proxy fds: {sc['fds']:,} "
           f"({sc['base_fds']:,} with none); RSS: "
           f"{sc['rss_kib'] / 1024:.1f} MiB; "
           f"{'-' if kib is None else f'{kib:.1f}'} KiB per pair.")
    steps = ", ".join(f"{x['target']:,} → {x['pairs']:,} ({x['fds']:,} fds)"
                      for x in sc["steps"])
    txt += f" Steps (pairs tried → held): {steps}."
    if sc.get("stopped"):
        txt += (f" Stopped at {sc['stopped']['at']:,}: "
                f"{sc['stopped']['reason'][:200]}")
        pl = sc["stopped"].get("proxy_log")
        if pl:     # without its timestamp
            txt += "; vmgate logged: " + re.sub(r"^\S+Z ", "", pl)[:200]
        txt += "."
    if sc.get("failed"):
        txt += f" Failed: {sc['failed'][:200]}."
    return txt + "\n"


def summarize(reps, keys):
    s = {k: med([r.get(k) for r in reps]) for k in keys}
    s["reps"] = reps
    return s


def add_errors(s, reps):
    errs = [x for x in reps if x.get("errors")]
    if errs:
        s["errors"] = sum(x["errors"] for x in reps)
        s["first_error"] = errs[0].get("first_error", "")


def tail(path, n=5):
    try:
        lines = open(path, errors="replace").read().splitlines()
    except OSError:
        return ""
    return " | ".join(lines[-n:])


def log_summary(path):
    """Warnings and errors a proxy logged (first few, and counts)."""
    try:
        lines = open(path, errors="replace").read().splitlines()
    except OSError:
        return {}
    bad = [l for l in lines if re.search(r"\b(WARN|ERROR|warn|error|emerg|crit|alert)\b", l)]
    return {"lines": len(lines), "warn_or_error": len(bad), "first": bad[:5]}


def proxy_version(name):
    cmd = ([VMGATE_BUILDS[name]["bin"], "--version"] if name in VMGATES else
           {"haproxy": ["haproxy", "-v"], "nginx": ["nginx", "-v"],
            "hitch": ["hitch", "--version"]}[name])
    r = subprocess.run(cmd, capture_output=True, text=True)
    return (r.stdout + r.stderr).strip().splitlines()[0] if (r.stdout + r.stderr).strip() else "?"


# ----------------------------------------------------------------- floor

OPENSSL_SIGN = "openssl speed ecdsap256 sign"


def crypto_floor(prev=None):
    """bssl-tool speed on the proxy's CPU: what the crypto alone costs;
    and openssl speed's ECDSA P-256 signature (vmgate-signer's library).
    With prev (an earlier measurement), keep the faster of the two for each
    operation: a floor is a minimum, and the machine may be shared."""
    res = {}
    for filt, chunks in (("AES-128-GCM", "256,16384"), ("ECDSA P-256", None),
                         ("Curve25519", None)):
        argv = ["taskset", "-c", PROXY_CPU, "bssl-tool", "speed", "-filter",
                filt, "-timeout", str(FLOOR_SECS), "-json"]
        if chunks:
            argv += ["-chunks", chunks]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        txt = r.stdout
        for m in re.finditer(r"\{[^{}]*\}", txt):
            try:
                e = json.loads(m.group(0))
            except ValueError:
                continue
            us = e.get("microseconds", e.get("timeInMicroseconds"))
            res[e["description"]] = {"us_per_call": us / e["numCalls"],
                                     "bytes": e.get("bytesPerCall")}
    # The same signature in OpenSSL 3's libcrypto, the library
    # vmgate-signer signs with.  -elapsed: wall time, as bssl-tool counts
    # (openssl's default divides by its user CPU time).
    secs = max(1, int(round(FLOOR_SECS)))
    r = subprocess.run(["taskset", "-c", PROXY_CPU, "openssl", "speed",
                        "-elapsed", "-seconds", str(secs), "-mr",
                        "ecdsap256"], capture_output=True, text=True,
                       timeout=120)
    m = re.search(r"^\+F4:\d+:256:([0-9.]+):([0-9.]+)", r.stdout, re.M)
    if m and float(m.group(1)) > 0:
        res[OPENSSL_SIGN] = {"us_per_call": 1e6 / float(m.group(1)),
                             "bytes": None}
    if prev:
        for k, v in prev.get("raw", {}).items():
            if k not in res or v["us_per_call"] < res[k]["us_per_call"]:
                res[k] = v
    f = {}
    try:
        gcm16k = res["AES-128-GCM (16384 bytes) seal"]
        gcm256 = res["AES-128-GCM (256 bytes) seal"]
        sign = res["ECDSA P-256 signing"]["us_per_call"]
        xbase = res["Curve25519 base-point multiplication"]["us_per_call"]
        xarb = res["Curve25519 arbitrary point multiplication"]["us_per_call"]
    except KeyError as e:
        raise RuntimeError(f"bssl-tool speed: no figure for {e}; got {list(res)}")
    f["aes128gcm_MBps"] = 16384 / gcm16k["us_per_call"]
    f["ecdsa_p256_sign_us"] = sign
    f["ecdsa_p256_sign_openssl_us"] = res.get(OPENSSL_SIGN, {}).get("us_per_call")
    f["x25519_keygen_us"] = xbase
    f["x25519_agree_us"] = xarb
    # server side of a full TLS 1.3 handshake: X25519 keygen + agree + 1 sign
    f["full_handshake_us"] = sign + xbase + xarb
    # resumed (psk_dhe_ke): X25519 keygen + agree, no signature
    f["resumed_handshake_us"] = xbase + xarb
    # one small request/response: open one record, seal one (<= 256 bytes)
    f["small_request_us"] = 2 * gcm256["us_per_call"]
    # a GB relayed: every byte through AES-GCM once (decrypt or encrypt)
    f["cpu_s_per_gb"] = 1e9 / (f["aes128gcm_MBps"] * 1e6)
    f["raw"] = res
    return f


# ----------------------------------------------------------------- report

def fmt(v, digits=0):
    if v is None:
        return "-"
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


ROWS = [
    # key path, label, digits, higher-is-better, floor key (cpu cost rows)
    (("w1", "rate"), "W1 full handshakes/s", 0, True, None),
    (("w1", "cpu_us_per"), "W1 proxy CPU-µs / handshake (total: all its processes, vmgate's signer included)", 0, False, "full_handshake_us"),
    (("w1", "main_cpu_us_per"), "W1 of which vmgate's own process", 0, None, None),
    (("w1", "signer_cpu_us_per"), "W1 of which vmgate-signer (one signature per handshake; × openssl speed)", 0, None, "ecdsa_p256_sign_openssl_us"),
    (("w1", "cpu_busy"), "W1 proxy CPU busy (of 1 core)", 2, None, None),
    (("w2", "rate"), f"W2 keep-alive requests/s (c={W2_CONC})", 0, True, None),
    (("w2", "p50_ms"), "W2 latency p50 (ms)", 2, False, None),
    (("w2", "p99_ms"), "W2 latency p99 (ms)", 2, False, None),
    (("w2", "cpu_us_per"), "W2 proxy CPU-µs / request", 1, False, "small_request_us"),
    (("w2", "cpu_busy"), "W2 proxy CPU busy", 2, None, None),
    (("w3_down", "mbps"), f"W3 download MB/s ({BIG_BYTES >> 20} MiB responses, c={W3_CONC})", 0, True, None),
    (("w3_down", "cpu_s_per_gb"), "W3 download proxy CPU-s / GB", 2, False, "cpu_s_per_gb"),
    (("w3_down", "cpu_busy"), "W3 download proxy CPU busy", 2, None, None),
    (("w3_up", "mbps"), f"W3 upload MB/s ({UPLOAD_BYTES >> 20} MiB bodies, c={W3_CONC})", 0, True, None),
    (("w3_up", "cpu_s_per_gb"), "W3 upload proxy CPU-s / GB", 2, False, "cpu_s_per_gb"),
    (("w3_up", "cpu_busy"), "W3 upload proxy CPU busy", 2, None, None),
    (("cpu0_other_busy",), f"CPU {PROXY_CPU} busy outside the proxy (kernel softirq + other processes; median W1-W3, W5)", 2, None, None),
    (("w4", "base_rss_kib"), "W4 proxy RSS with no connections (KiB)", 0, False, None),
    (("w4", 0, "kib_per_conn"), f"W4 KiB / idle TLS connection ({IDLE_COUNTS[0]:,})", 1, False, None),
    (("w4", 1, "kib_per_conn"), f"W4 KiB / idle TLS connection ({IDLE_COUNTS[1]:,})", 1, False, None),
    (("w4", 1, "rss_kib"), f"W4 proxy RSS at {IDLE_COUNTS[1]:,} (KiB)", 0, False, None),
    (("w4", 1, "established"), f"W4 connections established (of {IDLE_COUNTS[1]:,})", 0, True, None),
    (("w4", 0, "cpu_us_per_conn"), "W4 proxy CPU-µs / connection set up", 0, False, "full_handshake_us"),
    (("w4", "teardown_s"), f"W4 seconds to close {IDLE_COUNTS[-1]:,} connections after the client drops them", 2, False, None),
    (("w5", "rate"), "W5 resumed handshakes/s", 0, True, None),
    (("w5", "resumed_frac"), "W5 fraction actually resumed", 3, True, None),
    (("w5", "cpu_us_per"), "W5 proxy CPU-µs / resumed handshake", 0, False, "resumed_handshake_us"),
    (("w5", "signer_cpu_us_per"), "W5 of which vmgate-signer (resumptions sign nothing)", 1, None, None),
    (("w5", "cpu_busy"), "W5 proxy CPU busy", 2, None, None),
]


def get(d, path):
    for k in path:
        if d is None:
            return None
        if isinstance(k, int):
            pts = d.get("points", [])
            d = pts[k] if k < len(pts) else None
        else:
            d = d.get(k) if isinstance(d, dict) else None
    return d


def vs_best_peer(results, path, higher, name):
    """name's value at path over the best peer's (None if either lacks it)."""
    by = {r["name"]: r for r in results}
    pv = [get(r, path) for r in results if r["name"] not in VMGATES]
    pv = [x for x in pv if x is not None]
    v = get(by.get(name), path)
    if not pv or v is None:
        return None
    best = max(pv) if higher else min(pv)
    return v / best if best else None


# Issue 14's target for W1, against the best peer: total CPU per full
# handshake at most 0.55x, handshakes/s at least 1.3x.
W1_TARGETS = [(("w1", "cpu_us_per"), False, 0.55,
               "total CPU per full handshake"),
              (("w1", "rate"), True, 1.3,
               "handshakes/s at the one-core client's limit")]


def render_targets(results):
    """One line per vmgate column: issue 14's W1 targets, met or not."""
    out = []
    for n in [r["name"] for r in results if r["name"] in VMGATES]:
        parts = []
        for path, higher, target, what in W1_TARGETS:
            r = vs_best_peer(results, path, higher, n)
            if r is None:
                continue
            met = r >= target if higher else r <= target
            txt = f"{what} {r:.2f}× the best peer's (target {'≥' if higher else '≤'} {target:g}×: "
            if met:
                txt += "met)"
            elif higher:
                txt += f"missed, {target / r - 1:.0%} short)"
            else:
                txt += f"missed, {r / target - 1:.0%} over)"
            parts.append(txt)
        if parts:
            out.append(f"{n}: " + "; ".join(parts))
    if not out:
        return ""
    return ("Issue 14's W1 target (median of each): " + ". ".join(out) +
            ". (Handshakes/s on equal CPU: W1 in rounds, below.)\n")


def render_signature(results, floor):
    """The signature's cost: BoringSSL and OpenSSL on this CPU, what the
    signer spent per handshake in W1, and what it bought."""
    bssl = floor.get("ecdsa_p256_sign_us")
    ossl = floor.get("ecdsa_p256_sign_openssl_us")
    txt = (f"Signature cost (ECDSA P-256 sign, CPU {PROXY_CPU}, wall time, best of "
           f"before and after): BoringSSL (`bssl-tool speed -filter 'ECDSA "
           f"P-256'`, vmgate's in-process keys) {1e6 / bssl:,.0f}/s = "
           f"{bssl:.1f} µs; ")
    txt += ("OpenSSL 3 (`openssl speed -elapsed ecdsap256`, vmgate-signer's "
            f"library) {1e6 / ossl:,.0f}/s = {ossl:.1f} µs." if ossl else
            "OpenSSL 3 (`openssl speed ecdsap256`): no figure.")
    by = {r["name"]: r for r in results}
    s = get(by.get(VMGATE_SIGNER), ("w1", "signer_cpu_us_per"))
    if s is not None:
        txt += (f" In W1 vmgate-signer spent {s:.0f} CPU-µs per handshake"
                + (f", {s / ossl:.2f}× openssl speed's signature: the rest "
                   "is its socket, framing and per-call set-up" if ossl else "")
                + ".")
    a = get(by.get(VMGATE_IN), ("w1", "cpu_us_per"))
    b = get(by.get(VMGATE_SIGNER), ("w1", "cpu_us_per"))
    if a is not None and b is not None:
        txt += (f" Total CPU per full handshake: {a:.0f} µs with the keys in "
                f"process, {b:.0f} µs with the signer ({b - a:+.0f} µs, "
                f"{b / a:.2f}×).")
    return txt + "\n"


def render(results, floor, meta, scale=None, w1r=None):
    names = [r["name"] for r in results]
    peers = [n for n in names if n not in VMGATES]
    ours = [n for n in names if n in VMGATES]
    by = {r["name"]: r for r in results}
    head = ["metric (median of %d)" % REPS] + names
    if peers:
        head += [f"{n} / best peer" for n in ours]
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for path, label, digits, higher, fkey in ROWS:
        vals = {n: get(by[n], path) for n in names}
        if all(v is None for v in vals.values()):
            continue            # a workload not run (BENCH_WORKLOADS)
        cells = []
        for n in names:
            v = vals[n]
            c = fmt(v, digits)
            if fkey and v is not None and floor.get(fkey):
                c += f" ({v / floor[fkey]:.1f}×)"
            cells.append(c)
        for n in ours if peers else []:
            r = None if higher is None else vs_best_peer(results, path, higher, n)
            if higher is None or vals[n] is None:
                cells.append("")
            else:
                cells.append("-" if r is None else
                             "> 100" if r > 100 else f"{r:.2f}")
        lines.append("| " + " | ".join([label] + cells) + " |")
    # No row: only W1 in rounds was run (BENCH_WORKLOADS=w1r).
    table = "\n".join(lines) if len(lines) > 2 else ""
    fl = (f"Crypto floor (`bssl-tool speed`, CPU {PROXY_CPU}, same run, best of before and after): "
          f"AES-128-GCM {floor['aes128gcm_MBps']:,.0f} MB/s "
          f"({floor['cpu_s_per_gb']:.3f} CPU-s/GB), "
          f"ECDSA P-256 sign {floor['ecdsa_p256_sign_us']:.1f} µs, "
          f"X25519 keygen {floor['x25519_keygen_us']:.1f} µs + agree "
          f"{floor['x25519_agree_us']:.1f} µs; floor per full handshake "
          f"{floor['full_handshake_us']:.0f} µs, per resumed handshake "
          f"{floor['resumed_handshake_us']:.0f} µs, per small request "
          f"{floor['small_request_us']:.2f} µs. "
          "(N×) after a CPU cost = that cost divided by its floor.")
    sc = render_scale(scale)
    sc = "\n" + sc if sc else ""
    tg = render_targets(results)
    rounds = render_w1r(w1r)
    if rounds:
        tg = (tg + "\n" if tg else "") + rounds
    sig = render_signature(results, floor)
    builds = "; ".join(f"{n} = {VMGATE_BUILDS[n]['bin']} (KEY_SIGNER="
                       f"{'y' if VMGATE_BUILDS[n]['key_signer'] else 'n'})"
                       for n in ours if n in VMGATE_BUILDS)
    diff = build_differences(VMGATE_BUILDS) if len(ours) == 2 else []
    if builds:
        builds = ("vmgate builds: " + builds + ("; other Kconfig differences: "
                  + ", ".join(diff) if diff else "") + ".\n")
    neg = "; ".join(f"{r['name']}: {r.get('negotiated_openssl', '?')}"
                    for r in results)
    vers = "; ".join(f"{r['name']} {r.get('version', '?')}" for r in results)
    about = (f"Negotiated (OpenSSL client = wrk's settings): {neg}.\n"
             f"Versions: {vers}.\n" if results else "")
    return f"""\
## vmgate benchmark: {meta['date']}{' (BENCH_QUICK)' if QUICK else ''}

Machine: {meta['machine']}

{table}
{sc}
{tg}
{sig}
{fl}

{about}{builds}Proxy pinned to CPU {PROXY_CPU}, one worker; backend (nginx) and load generators on CPU {LOAD_CPU}.
Load: W1/W5 bench/tlsload.c (BoringSSL client, c={W1_CONC}, a new connection per request),
W2/W3 wrk -t1, W4 bench/tlsload.c idle. {REPS} repetitions of {DUR:g} s each.
"""


def machine():
    cpu = "?"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    try:
        deb = open("/etc/debian_version").read().strip()
    except OSError:
        deb = "?"
    mem = 0
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal"):
            mem = int(line.split()[1]) // 1024
    return (f"{cpu}, {os.cpu_count()} CPUs, {mem} MiB RAM, Linux "
            f"{platform.release()}, Debian {deb}, load average at start "
            f"{open('/proc/loadavg').read().split()[0]}")


def update_readme(md):
    path = os.path.join(HERE, "README.md")
    try:
        text = open(path).read()
    except OSError:
        return
    b, e = "<!-- bench:latest:begin -->", "<!-- bench:latest:end -->"
    if b in text and e in text:
        text = text[:text.index(b) + len(b)] + "\n" + md + text[text.index(e):]
        write(path, text)


def main():
    t_start = time.monotonic()
    ensure_packages()
    tlsload = build_tools()
    raise_nofile()
    tmp = tempfile.mkdtemp(prefix="vmgate-bench-")
    notes = []
    meta = {"date": datetime.datetime.now(datetime.timezone.utc)
            .strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
            "quick": QUICK, "reps": REPS, "duration_s": DUR}
    VMGATE_BUILDS.update(vmgate_builds(notes))
    proxies = []
    for name in PROXIES:
        if name in VMGATES and name not in VMGATE_BUILDS:
            notes.append(f"{name}: no build found (KEY_SIGNER="
                         f"{'y' if name == VMGATE_SIGNER else 'n'}): "
                         + ("`make`" if name == VMGATE_SIGNER
                            else "`make FLAVOUR=inproc all`")
                         + ", or BENCH_VMGATE_BINS")
            log(notes[-1])
            continue
        proxies.append(name)
    if any(n in VMGATES for n in PROXIES) and not VMGATE_BUILDS:
        sys.exit(f"bench: {VMGATE} is missing: run `make` first")
    meta["vmgate_builds"] = {n: {"bin": b["bin"], "key_signer": b["key_signer"],
                                 "config_h": b["config"].get("_path")}
                             for n, b in VMGATE_BUILDS.items()}
    meta["workloads"] = WORKLOADS
    log("machine:", meta["machine"])
    log("vmgate builds:", ", ".join(f"{n} = {b['bin']}"
                                    for n, b in VMGATE_BUILDS.items()))
    log("temporary directory:", tmp)
    for port in (BACKEND_PORT, PROXY_PORT):
        if wait_port(port, 0.2):
            sys.exit(f"bench: port {port} is already in use")
    files = make_files(tmp)
    runner = Runner(tmp, tlsload)
    log("crypto floor (bssl-tool speed)")
    floor = crypto_floor()
    with open(os.path.join(tmp, "backend.conf"), "w") as f:
        f.write(backend_conf(tmp, files["www"]))
    backend = Daemon("backend", ["nginx", "-p", tmp, "-e",
                                 os.path.join(tmp, "backend", "error.log"),
                                 "-c", os.path.join(tmp, "backend.conf")],
                     LOAD_CPU, os.path.join(tmp, "backend.stderr"))
    results = []
    w1r = None
    try:
        if not wait_port(BACKEND_PORT):
            sys.exit("bench: backend nginx did not start: " +
                     tail(os.path.join(tmp, "backend", "error.log")))
        per_proxy = [w for w in WORKLOADS if w != "w1r"]
        for name in proxies if per_proxy else []:
            log(f"{name}: running")
            t0 = time.monotonic()
            try:
                results.append(run_proxy(name, tmp, files, runner, notes))
            except Exception as e:       # report, go on with the next proxy
                notes.append(f"{name}: {type(e).__name__}: {e}")
                log(f"{name}: failed: {e}")
                results.append({"name": name, "failed": str(e)})
            log(f"{name}: done in {time.monotonic() - t0:.0f} s")
        if "w1r" in WORKLOADS:
            log(f"w1 in rounds: {W1R_ROUNDS} rounds of {len(proxies)} proxies")
            t0 = time.monotonic()
            w1r = run_w1_rounds(proxies, tmp, files, runner, notes)
            log(f"w1 in rounds: done in {time.monotonic() - t0:.0f} s")
    finally:
        backend.stop()
    log("crypto floor again (the faster of the two is kept)")
    floor = crypto_floor(floor)
    scale = None
    if any(n in VMGATES for n in proxies) and "w4" in WORKLOADS:
        if not SCALE:
            scale = {"skipped": "BENCH_SCALE=0"}
        elif not os.access(VMGATE, os.X_OK):
            scale = {"skipped": f"{VMGATE} is missing"}
        else:
            log(f"w4 scale: vmgate, {SCALE_WORKERS} workers, up to "
                f"{SCALE_TARGET:,} idle pairs")
            t0 = time.monotonic()
            scale = run_scale(tmp, files, runner, notes)
            log(f"w4 scale: done in {time.monotonic() - t0:.0f} s")
            if scale.get("skipped"):
                notes.append(f"w4 scale: skipped: {scale['skipped']}")
    for r in results:
        for key in ("w1", "w2", "w3_down", "w3_up", "w5"):
            if r.get(key, {}).get("errors"):
                notes.append(f"{r['name']} {key}: {r[key]['errors']} errors, "
                             f"first: {r[key].get('first_error', '')[:200]}")
        for pt in r.get("w4", {}).get("points", []):
            if pt["established"] < pt["target"]:
                notes.append(f"{r['name']} w4: {pt['established']} of "
                             f"{pt['target']} established; first error: "
                             f"{pt['first_error']}")
        ic = r.get("info_check")
        if ic and not ic["resumed_1"]:
            notes.append(f"{r['name']}: no resumed=1 close line at log level info")
        for k in ("log_tail", "log_tail_w4"):
            lt = r.get(k) or {}
            if lt.get("warn_or_error"):
                notes.append(f"{r['name']} logged {lt['warn_or_error']} warning/error "
                             f"lines ({k}); first: " + " | ".join(lt["first"][:2])[:300])
    meta["elapsed_s"] = round(time.monotonic() - t_start, 1)
    md = render([r for r in results if "failed" not in r], floor, meta, scale,
                w1r)
    if notes:
        md += "\nNotes:\n" + "".join(f"- {n}\n" for n in notes)
    md += f"\nRun time: {meta['elapsed_s']:.0f} s.\n"
    print(md)
    os.makedirs(RESULTS, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    suffix = "-quick" if QUICK else ""
    doc = {"meta": meta, "floor": floor, "results": results, "notes": notes}
    if scale is not None:
        doc["scale"] = scale
    if w1r is not None:
        doc["w1_rounds"] = w1r
    for base in ("latest" + suffix, stamp + suffix):
        write(os.path.join(RESULTS, base + ".md"), md)
        write(os.path.join(RESULTS, base + ".json"), json.dumps(doc, indent=1))
    if (not QUICK and set(proxies) == set(ALL_PROXIES) and
            set(WORKLOADS) == set(ALL_WORKLOADS)):
        update_readme(md)
    log(f"results in {RESULTS}/latest{suffix}.md and .json")
    if os.environ.get("BENCH_KEEP"):
        log("kept", tmp)
    else:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
