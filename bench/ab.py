#!/usr/bin/python3
"""bench/ab.py: two vmgate builds side by side, for changes worth a few
per cent of W1's CPU, which runs one after the other cannot resolve here.

    bench/ab.py OLD_VMGATE NEW_VMGATE [ROUNDS]     (default 8 rounds)

Each binary runs with the vmgate-signer beside it (the default build), one
worker, pinned to the same CPU (0), both at once, each under W1 from its
own tlsload (c=16, on CPU 1) for 4 s, through one nginx backend. Both see
the same host at the same moment, so the drift of this machine's CPU time
per unit of work (see README: "W1r, and why rounds") cancels in their
ratio. Every round starts both afresh and swaps their ports. The line per
round and the summary give CPU-µs per full handshake of each process tree
(vmgate and its signer) and NEW / OLD: the median of the rounds, and their
range. A ratio, not a figure to set against the peers: two proxies on one
core are busier than one, and sleep less. Everything runs on loopback;
every load is bounded in time; the processes are stopped by their pids.
"""
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  bench/run.py: the set-up and the measuring

PORTS = (run.PROXY_PORT, run.PROXY_PORT + 1)
DUR = 4.0


def one_round(r, builds, tmp, files, runner):
    ports = PORTS if r % 2 == 0 else PORTS[::-1]
    daemons, results = {}, {}
    for port in ports:      # the last round's processes are gone
        if not run.wait_port_free(port):
            raise SystemExit(f"ab: [::1]:{port} is still in use")
    try:
        for (name, binary), port in zip(builds, ports):
            d = os.path.join(tmp, f"{name}-{r}")
            os.makedirs(d)
            cfg = run.vmgate_config(d, files, port=port, binary=binary)
            daemons[name] = run.Daemon(name, [binary, "-c", cfg],
                                       run.PROXY_CPU,
                                       os.path.join(d, "vmgate.log"))
        for port in ports:
            if not run.wait_port(port):
                raise SystemExit(f"ab: nothing listens on [::1]:{port}; "
                                 f"logs under {tmp}")
        time.sleep(run.W1R_WARM_S)
        for (name, _), port in zip(builds, ports):   # warm-up
            runner.tls("hs", run.W1_CONC, 0.5, port=port)
        before = {n: d.cpu()[0] for n, d in daemons.items()}

        def load(name, port):
            results[name] = runner.tls("hs", run.W1_CONC, DUR, port=port)
        threads = [threading.Thread(target=load, args=(name, port))
                   for (name, _), port in zip(builds, ports)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        after = {n: d.cpu()[0] for n, d in daemons.items()}
    finally:
        for d in daemons.values():
            d.stop()
    per = {}
    for name, _ in builds:
        res = results.get(name) or {}
        if not res.get("ok") or res.get("errors"):
            raise SystemExit(f"ab: {name}: {res.get('ok', 0)} handshakes, "
                             f"{res.get('errors', '?')} errors "
                             f"({res.get('first_error', '')}); logs under "
                             f"{tmp}")
        per[name] = (after[name] - before[name]) * 1e6 / res["ok"]
    return per, {n: results[n]["ok"] for n in per}


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    builds = [("old", os.path.abspath(sys.argv[1])),
              ("new", os.path.abspath(sys.argv[2]))]
    rounds = int(sys.argv[3]) if len(sys.argv) == 4 else 8
    for _, b in builds:
        if not os.access(b, os.X_OK):
            sys.exit(f"ab: {b}: not an executable")
    run.ensure_packages()
    tlsload = run.build_tools()
    tmp = tempfile.mkdtemp(prefix="vmgate-ab-")
    backend = None
    try:
        files = run.make_files(tmp)
        bconf = os.path.join(tmp, "backend.conf")
        run.write(bconf, run.backend_conf(tmp, files["www"]))
        backend = run.Daemon("backend", ["nginx", "-c", bconf], run.LOAD_CPU,
                             os.path.join(tmp, "backend.log"))
        if not run.wait_port(run.BACKEND_PORT):
            sys.exit("ab: the nginx backend did not start")
        runner = run.Runner(tmp, tlsload)
        ratios = []
        for r in range(rounds):
            per, ok = one_round(r, builds, tmp, files, runner)
            ratios.append(per["new"] / per["old"])
            print(f"round {r + 1}/{rounds}: old {per['old']:.1f} new "
                  f"{per['new']:.1f} CPU-µs per full handshake "
                  f"({ok['old']}/{ok['new']} handshakes) new/old "
                  f"{ratios[-1]:.3f}", flush=True)
        print(f"new/old: {statistics.median(ratios):.3f} (median of "
              f"{rounds} rounds; {min(ratios):.3f}-{max(ratios):.3f}; "
              f"{sum(x < 1 for x in ratios)} of {rounds} below 1)")
    finally:
        if backend:
            backend.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    main()
