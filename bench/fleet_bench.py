#!/usr/bin/python3
"""bench/fleet_bench.py: fleet mode at scale (`make bench-fleet`).

Starts a 3-member etcd cluster of its own (loopback, ports from bind(0),
data in a temporary directory, killed by PID at the end), loads
BENCH_FLEET_VMS VMs (default 1,000,000) under /vmgate/v1/vms/ in txns of
128 puts, then measures one appliance's

  - cold start (no snapshot): seconds to serving (its 'ready' line) and to
    converged (its /fleet shows every VM and the watch running), and RSS;
  - warm start (the snapshot the cold start wrote): the same;

and, with three appliances running, put-to-routed latency over
BENCH_FLEET_CHANGES changes (default 1,000): one put in etcd, then the
time until all three answer GET /vms/{id} (their route table has it):
p50 and p99.

Results are printed and written to bench/results/fleet-latest.md.
Not part of `make test`. Needs etcd-server and the build's vmgate.
"""

import base64
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VMGATE = os.environ.get("VMGATE_BIN", os.path.join(REPO, "build", "vmgate"))
N = int(os.environ.get("BENCH_FLEET_VMS", "1000000"))
CHANGES = int(os.environ.get("BENCH_FLEET_CHANGES", "1000"))
PREFIX = "/vmgate/v1/"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def call(url, path, body, timeout=30):
    req = urllib.request.Request(url + "/v3/" + path, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


class Cluster:
    def __init__(self, d):
        self.d = d
        self.m = [(free_port(), free_port()) for _ in range(3)]
        self.urls = ["http://127.0.0.1:%d" % c for c, _ in self.m]
        self.procs = []

    def start(self):
        init = ",".join("m%d=http://127.0.0.1:%d" % (i, p) for i, (_, p) in enumerate(self.m))
        for i, (c, p) in enumerate(self.m):
            log = open(os.path.join(self.d, "etcd%d.log" % i), "wb")
            self.procs.append(subprocess.Popen([
                "etcd", "--name", "m%d" % i, "--data-dir", os.path.join(self.d, "m%d" % i),
                "--listen-client-urls", self.urls[i], "--advertise-client-urls", self.urls[i],
                "--listen-peer-urls", "http://127.0.0.1:%d" % p,
                "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % p,
                "--initial-cluster", init, "--initial-cluster-state", "new",
                "--quota-backend-bytes", str(8 << 30),
                "--experimental-watch-progress-notify-interval", "1s"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        t0 = time.monotonic()
        while time.monotonic() < t0 + 30:
            try:
                call(self.urls[0], "kv/put", {"key": b64("/bench/up"), "value": b64("1")}, 2)
                return
            except Exception:
                time.sleep(0.2)
        raise RuntimeError("etcd did not come up")

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait()


def certs(d):
    key, crt = os.path.join(d, "key.pem"), os.path.join(d, "crt.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", "/CN=vm.test",
                    "-addext", "subjectAltName=DNS:*.vm.test", "-keyout", key, "-out", crt],
                   check=True, capture_output=True)
    return crt, key


class Appliance:
    def __init__(self, d, name, cluster, crt, key):
        os.makedirs(d, exist_ok=True)
        self.d, self.name = d, name
        self.port = free_port()
        self.unix = os.path.join(d, "admin.sock")
        self.cfg = os.path.join(d, "appliance.yaml")
        self.log = os.path.join(d, "vmgate.log")
        with open(self.cfg, "w") as f:
            f.write("\n".join([
                "workers: 1", "log_level: info",
                "listen: { ports: [%d] }" % self.port,
                "tls: { certificates: [ { cert: %s, key: %s } ] }" % (crt, key),
                "domains: [ { suffix: vm.test } ]",
                "admin: { unix: %s }" % self.unix,
                "fleet:",
                "  etcd: { endpoints: [%s], progress_interval_ms: 1000, timeout_ms: 30000 }"
                % ", ".join('"%s"' % u for u in cluster.urls),
                "  appliance_id: %s" % name, ""]))
        self.proc = None

    def start(self):
        self.mark = os.path.getsize(self.log) if os.path.exists(self.log) else 0
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen([VMGATE, "-c", self.cfg], stdout=open(self.log, "ab"),
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self):
        while " ready " not in open(self.log).read()[self.mark:]:
            if self.proc.poll() is not None:
                raise RuntimeError("vmgate exited:\n" + open(self.log).read()[-2000:])
            time.sleep(0.005)
        return time.monotonic() - self.t0

    def api(self, path, timeout=30):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(timeout)
        s.connect(self.unix)
        c = http.client.HTTPConnection("localhost", timeout=timeout)
        c.sock = s
        c.request("GET", path)
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, data

    def wait_converged(self, n):
        while True:
            try:
                st, j = self.api("/fleet")
                j = json.loads(j)
                if j["watch"] == "watching" and j["etcd_vms"] >= n:
                    return time.monotonic() - self.t0
            except (OSError, ValueError):
                pass
            time.sleep(0.05)

    def rss_mib(self):
        for line in open("/proc/%d/status" % self.proc.pid):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)


def load(cluster, n):
    t0 = time.monotonic()
    v = b64(json.dumps({"address": "fd00::10"}))
    done = 0
    while done < n:
        k = min(128, n - done)
        call(cluster.urls[done // 128 % 3], "kv/txn", {"success": [
            {"request_put": {"key": b64(PREFIX + "vms/vm-%07d" % (done + i)), "value": v}}
            for i in range(k)]})
        done += k
    return time.monotonic() - t0


def main():
    if not os.access(VMGATE, os.X_OK):
        sys.exit("no vmgate at %s: run make" % VMGATE)
    d = tempfile.mkdtemp(prefix="vmgate-fleet-bench-")
    cluster = Cluster(d)
    apps = []
    out = []
    try:
        cluster.start()
        crt, key = certs(d)
        secs = load(cluster, N)
        out.append("| %s VMs loaded into etcd (txns of 128) | %.1f s (%.0f VMs/s) |"
                   % (format(N, ","), secs, N / secs))
        a = Appliance(os.path.join(d, "a"), "bench-a", cluster, crt, key)
        apps.append(a)
        a.start()
        ready = a.wait_ready()
        conv = a.wait_converged(N)
        out.append("| cold start (no snapshot): serving / converged | %.2f s / %.2f s |"
                   % (ready, conv))
        out.append("| RSS after the cold start | %.0f MiB |" % a.rss_mib())
        time.sleep(1.5)  # the snapshot file is written at most once a second
        a.stop()
        a.start()
        ready = a.wait_ready()
        st, _ = a.api("/vms/vm-%07d" % (N - 1))
        served = time.monotonic() - a.t0
        assert st == 200, "snapshot VM not served at start"
        conv = a.wait_converged(N)
        out.append("| warm start (snapshot): serving / last VM routed / converged | "
                   "%.2f s / %.2f s / %.2f s |" % (ready, served, conv))
        out.append("| RSS after the warm start | %.0f MiB |" % a.rss_mib())
        for n in ("bench-b", "bench-c"):
            b = Appliance(os.path.join(d, n), n, cluster, crt, key)
            apps.append(b)
            b.start()
            b.wait_ready()
            b.wait_converged(N)
        lat = []
        v = b64(json.dumps({"address": "fd00::20"}))
        for i in range(CHANGES):
            vid = "chg-%05d" % i
            t0 = time.monotonic()
            call(cluster.urls[i % 3], "kv/put", {"key": b64(PREFIX + "vms/" + vid), "value": v})
            pending = list(apps)
            while pending:
                pending = [x for x in pending if x.api("/vms/" + vid)[0] != 200]
                if pending:
                    time.sleep(0.001)
            lat.append((time.monotonic() - t0) * 1000)
        lat.sort()
        out.append("| put-to-routed on 3 appliances, %d changes: p50 / p99 | %.1f ms / %.1f ms |"
                   % (CHANGES, statistics.median(lat), lat[int(len(lat) * 0.99) - 1]))
    finally:
        for x in apps:
            x.stop()
        cluster.stop()
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(d, ignore_errors=True)
    text = "| fleet mode | |\n| --- | --- |\n" + "\n".join(out) + "\n"
    print(text)
    os.makedirs(os.path.join(REPO, "bench", "results"), exist_ok=True)
    with open(os.path.join(REPO, "bench", "results", "fleet-latest.md"), "w") as f:
        f.write("# make bench-fleet (%s VMs)\n\n" % format(N, ",") + text)


if __name__ == "__main__":
    main()
