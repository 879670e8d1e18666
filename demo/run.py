#!/usr/bin/python3
"""make demo: one VM behind vmgate, and the lines to try it.

Creates a demo VM (a network namespace, vmgate-demo-PID, at an fd00::
address on its own veth) running an HTTP service on port 3000, a
WebSocket echo on 8080 and an sshd on 22; writes build/demo/demo.yaml
(the shipped demo certificate, *.vm.vers.sh) and runs build/vmgate on
it in front; prints the curl, WebSocket and ssh lines to try, with the
name resolved to 127.0.0.1. Ctrl-C (SIGINT), SIGTERM or vmgate exiting
removes everything it made: processes, namespace, veth, files.

Environment (for tests): VMGATE_DEMO_PORTS="A,B,C" listens on A (-> VM
port 22), B (-> 3000) and C (-> 8080) instead of 443, 3000 and 8080;
VMGATE_BIN runs that binary instead of build/vmgate. Run as root, after
`make` (make demo does both). The demo certificate is made as make run
makes it, if there is none.
"""

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(REPO, "build")
DEMO = os.path.join(BUILD, "demo")
VMID = "45a68069-defc-4233-9865-6298d87053af"
SUFFIX = "vm.vers.sh"
HOST = "%s.%s" % (VMID, SUFFIX)
PY = "/usr/bin/python3"
IP = "/usr/sbin/ip" if os.path.exists("/usr/sbin/ip") else "ip"

# The demo VM's two services in Python (the sshd is Debian's).
VM_SERVICE = r'''
import asyncio, http.server, socket, sys
mode, port, vmid = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if mode == "http":
    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def do_GET(self):
            body = ("hello from VM %s, port %d: you asked for %s\n"
                    % (vmid, port, self.path)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *a):
            pass
    class S(http.server.ThreadingHTTPServer):
        address_family = socket.AF_INET6
    S(("::", port), H).serve_forever()
else:
    import websockets
    async def echo(ws, path=None):
        async for m in ws:
            await ws.send(m)
    async def main():
        async with websockets.serve(echo, "::", port):
            await asyncio.Future()
    asyncio.run(main())
'''


def run(argv, check=True):
    return subprocess.run(argv, check=check, capture_output=True, text=True)


class Demo:
    def __init__(self, ports):
        self.pid = os.getpid()
        self.ns = "vmgate-demo-%d" % self.pid
        self.host_if = "vgdemo%dh" % (self.pid % 100000)
        self.ports = ports  # listener ports for VM ports 22, 3000, 8080
        self.procs = []
        self.made_ns = self.made_link = False
        self.dir = os.path.join(DEMO, "run-%d" % self.pid)
        idx = 0xde00 + self.pid % 256
        used = run([IP, "-6", "-o", "addr"]).stdout
        while "fd00:%x::" % idx in used:
            idx += 1
        self.vm_addr = "fd00:%x::2" % idx
        self.host_addr = "fd00:%x::1" % idx

    # ------------------------------------------------------------ set up

    def vm(self, argv):
        return [IP, "netns", "exec", self.ns] + argv

    def spawn(self, argv, name, vm=True):
        log = open(os.path.join(self.dir, name + ".log"), "ab")
        p = subprocess.Popen(self.vm(argv) if vm else argv, stdout=log,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True)
        log.close()
        p.name = name
        self.procs.append(p)
        return p

    def network(self):
        run([IP, "netns", "add", self.ns])
        self.made_ns = True
        run([IP, "link", "add", self.host_if, "type", "veth", "peer", "name", "eth0",
             "netns", self.ns])
        self.made_link = True
        run([IP, "addr", "add", self.host_addr + "/64", "dev", self.host_if, "nodad"])
        run([IP, "link", "set", self.host_if, "up"])
        run(self.vm([IP, "link", "set", "lo", "up"]))
        run(self.vm([IP, "link", "set", "eth0", "up"]))
        run(self.vm([IP, "addr", "add", self.vm_addr + "/64", "dev", "eth0", "nodad"]))

    def ssh_kit(self):
        d = os.path.join(self.dir, "ssh")
        os.makedirs(d)
        self.ssh_key = os.path.join(d, "id_ed25519")
        host_key = os.path.join(d, "ssh_host_ed25519_key")
        for k in (host_key, self.ssh_key):
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vmgate-demo",
                 "-f", k])
        shutil.copy(self.ssh_key + ".pub", os.path.join(d, "authorized_keys"))
        cfg = os.path.join(d, "sshd_config")
        with open(cfg, "w") as f:
            f.write("\n".join([
                "Port 22", "ListenAddress ::", "HostKey " + host_key,
                "PermitRootLogin prohibit-password",
                "AuthorizedKeysFile " + os.path.join(d, "authorized_keys"),
                "PasswordAuthentication no", "KbdInteractiveAuthentication no",
                "UsePAM no", "StrictModes no",
                "PidFile " + os.path.join(d, "sshd.pid"), ""]))
        os.makedirs("/run/sshd", exist_ok=True)
        return cfg

    def services(self):
        script = os.path.join(self.dir, "vm_service.py")
        with open(script, "w") as f:
            f.write(VM_SERVICE)
        self.spawn([PY, script, "http", "3000", VMID], "vm-http")
        self.spawn([PY, script, "ws", "8080", VMID], "vm-ws")
        self.spawn(["unshare", "--uts", "sh", "-c",
                    "hostname demo-vm && exec /usr/sbin/sshd -D -e -f %s"
                    % shlex.quote(self.ssh_kit())], "vm-sshd")
        for port in (3000, 8080, 22):
            self.wait_tcp(self.vm_addr, port)

    def config(self):
        ssh_port, http_port, ws_port = self.ports
        path = os.path.join(self.dir, "demo.yaml")
        with open(path, "w") as f:
            f.write("\n".join([
                "# vmgate demo (generated by demo/run.py)",
                "workers: 1",
                "listen:",
                '  address: "::"',
                "  ports: [%d, %d, %d]" % (ssh_port, http_port, ws_port),
                "tls:",
                "  certificates:",
                "    - { cert: %s, key: %s }" % (os.path.join(DEMO, "fullchain.pem"),
                                                os.path.join(DEMO, "key.pem")),
                "  alpn_ports: { %d: [http/1.1], %d: [http/1.1] }" % (http_port, ws_port),
                "domains:",
                "  - suffix: %s" % SUFFIX,
                "    port_map: { %d: 22, %d: 3000, %d: 8080 }" % (ssh_port, http_port,
                                                                 ws_port),
                "    vm_errors: http",
                "vms:",
                '  - { id: %s, address: "%s" }' % (VMID, self.vm_addr),
                "",
            ]))
        return path

    def wait_tcp(self, addr, port, timeout=15.0, proc=None):
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection((addr, port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("nothing listens on [%s]:%d after %.0f s"
                                       % (addr, port, timeout))
                if proc is not None and proc.poll() is not None:
                    raise RuntimeError("%s exited (%s)" % (proc.name, proc.returncode))
                time.sleep(0.1)

    # ------------------------------------------------------------ tear down

    def teardown(self):
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        if self.made_link:
            run([IP, "link", "del", self.host_if], check=False)
        if self.made_ns:
            run([IP, "netns", "del", self.ns], check=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    # ------------------------------------------------------------ run

    def lines(self):
        ssh_port, http_port, ws_port = self.ports
        ca = os.path.relpath(os.path.join(DEMO, "fullchain.pem"))
        key = os.path.relpath(self.ssh_key)
        return [
            ("An HTTP service on VM port 3000",
             "curl --cacert %s --resolve %s:%d:127.0.0.1 https://%s:%d/hello"
             % (ca, HOST, http_port, HOST, http_port)),
            ("A WebSocket echo on VM port 8080 (type a line, get it back)",
             "%s demo/wsclient.py --cacert %s --resolve %s:%d:127.0.0.1 wss://%s:%d/"
             % (PY, ca, HOST, ws_port, HOST, ws_port)),
            ("SSH to the VM (port 22) through TLS on port %d" % ssh_port,
             "ssh -i %s -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no "
             "-o ProxyCommand='openssl s_client -quiet -connect 127.0.0.1:%d "
             "-servername %%h -CAfile %s' root@%s" % (key, ssh_port, ca, HOST)),
        ]

    def cert(self):
        if os.path.exists(os.path.join(DEMO, "fullchain.pem")):
            return
        os.makedirs(DEMO, exist_ok=True)
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:P-256", "-nodes", "-days", "825", "-subj",
             "/CN=vm.vers.sh", "-addext", "subjectAltName=DNS:*.vm.vers.sh,DNS:vm.vers.sh",
             "-keyout", os.path.join(DEMO, "key.pem"), "-out",
             os.path.join(DEMO, "fullchain.pem")])

    def main(self):
        self.cert()
        os.makedirs(self.dir)
        self.network()
        self.services()
        cfg = self.config()
        gate_bin = os.environ.get("VMGATE_BIN") or os.path.join(BUILD, "vmgate")
        gate = self.spawn(shlex.split(gate_bin) + ["-c", cfg], "vmgate", vm=False)
        self.wait_tcp("::1", self.ports[1], proc=gate)
        print("\nvmgate demo: VM %s at [%s] (namespace %s)\n"
              % (VMID, self.vm_addr, self.ns))
        for what, line in self.lines():
            print("# " + what)
            print(line + "\n")
        print("vmgate's log: %s\nCtrl-C stops the demo and removes the VM.\n"
              % os.path.relpath(os.path.join(self.dir, "vmgate.log")), flush=True)
        gate.wait()
        print("vmgate exited (%s)" % gate.returncode, flush=True)


def main():
    if os.geteuid() != 0:
        sys.exit("make demo needs root (network namespaces, ports)")
    ports = (443, 3000, 8080)
    if os.environ.get("VMGATE_DEMO_PORTS"):
        ports = tuple(int(p) for p in os.environ["VMGATE_DEMO_PORTS"].split(","))
        if len(ports) != 3:
            sys.exit("VMGATE_DEMO_PORTS: three ports, for VM ports 22, 3000, 8080")
    demo = Demo(ports)

    def stop(signum, frame):
        raise KeyboardInterrupt

    # SIGINT too: a shell starts a background job with SIGINT ignored,
    # and Python then leaves it so.
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        demo.main()
    except KeyboardInterrupt:
        print("\nstopping the demo", flush=True)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        demo.teardown()
        print("demo removed: namespace %s, veth %s" % (demo.ns, demo.host_if), flush=True)


if __name__ == "__main__":
    main()
