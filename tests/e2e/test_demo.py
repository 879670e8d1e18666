"""Issue 15 item 6: make demo. Its script (demo/run.py, what `make demo`
runs after building) is started in the background on free ports; the
curl, WebSocket and ssh lines it prints are run exactly as printed (from
the repository, as a newcomer would paste them) and must reach the demo
VM's services; SIGINT (Ctrl-C) must then remove the namespace, the veth,
every process and the run directory."""

import os
import re
import signal
import subprocess

import pytest

from conftest import PY
from e2e_net import free_ports
from e2e_util import REPO, wait_until


def sh(line, **kw):
    return subprocess.run(["bash", "-c", line], cwd=REPO, capture_output=True,
                          text=True, timeout=30, **kw)


@pytest.mark.timeout(90)
def test_demo(gate_bin, workdir):
    out_path = os.path.join(workdir, "demo.out")
    env = dict(os.environ, VMGATE_DEMO_PORTS=",".join(map(str, free_ports(3))),
               VMGATE_BIN=" ".join(gate_bin))
    with open(out_path, "wb") as out:
        p = subprocess.Popen([PY, os.path.join(REPO, "demo", "run.py")], cwd=REPO, env=env,
                             stdout=out, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True)

    def text():
        with open(out_path, errors="replace") as f:
            return f.read()

    ns = None
    try:
        wait_until(lambda: "Ctrl-C stops" in text() or p.poll() is not None, 60, step=0.1,
                   what="the demo's lines")
        t = text()
        assert p.poll() is None, "demo exited:\n" + t
        ns = re.search(r"\(namespace (vmgate-demo-\d+)\)", t).group(1)
        veth = "vgdemo%dh" % (p.pid % 100000)
        lines = [l for l in t.splitlines() if l and not l.startswith("#")]
        curl = next(l for l in lines if l.startswith("curl "))
        ws = next(l for l in lines if "wsclient.py" in l)
        ssh = next(l for l in lines if l.startswith("ssh "))

        r = sh(curl)
        assert r.returncode == 0 and r.stdout.startswith(
            "hello from VM 45a68069-defc-4233-9865-6298d87053af, port 3000: you asked for "
            "/hello"), (r.stdout, r.stderr)
        r = sh(ws, input="ping over websocket\n")
        assert r.returncode == 0 and r.stdout == "ping over websocket\n", (r.stdout, r.stderr)
        r = sh(ssh + " -o BatchMode=yes hostname")
        assert r.returncode == 0 and r.stdout.strip() == "demo-vm", (r.stdout, r.stderr)
        assert ns in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                    text=True).stdout
    finally:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGINT)
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            raise
    # Ctrl-C removed everything it made
    assert "demo removed" in text(), text()
    assert ns not in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                    text=True).stdout
    assert subprocess.run(["ip", "link", "show", veth], capture_output=True).returncode != 0
    assert not os.path.exists(os.path.join(REPO, "build", "demo", "run-%d" % p.pid))
    left = subprocess.run(["pgrep", "-f", "demo/run-%d/" % p.pid], capture_output=True,
                          text=True).stdout
    assert not left.strip(), "processes left: " + left
