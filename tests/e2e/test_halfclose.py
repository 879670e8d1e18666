"""9. Half-close in both directions, with a MemoryBIO client that controls
TLS close_notify and TCP FIN separately."""

import hashlib
import os
import time

from e2e_backend import HELLO
from e2e_util import BioClient, peer_re


def sink_roundtrip(live_gate, certs, how):
    data = os.urandom(777_777)
    c = BioClient(certs.client_ctx(), "vm2.vm.test", 3000)
    c.handshake()
    c.send(data)
    if how == "fin":
        c.shutdown_tcp_write()          # TCP FIN, no close_notify
    else:
        c.close_notify()                # close_notify, TCP stays open
    got, end = c.read(limit=100)
    c.close()
    want = (hashlib.sha256(data).hexdigest() + "\n").encode()
    assert got == want, (
        "after client half-close (%s) expected the sink's digest, got %r (end=%s)"
        % (how, got, end), live_gate.tail())
    return c


def test_client_fin_without_close_notify(live_gate, certs):
    sink_roundtrip(live_gate, certs, "fin")


def test_client_close_notify_then_read(live_gate, certs):
    mark = live_gate.mark()  # the client's port may have been used before
    c = sink_roundtrip(live_gate, certs, "close_notify")
    live_gate.wait_log(r"INFO close .*%s.*vm=vm2" % peer_re(c.local_port), timeout=5,
                       since=mark)


def wait_record(path, before, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(path) as f:
            now = f.read()
        if len(now) > len(before) and now.endswith("\n"):
            return now[len(before):]
        time.sleep(0.05)
    return None


def vm_halfclose(live_gate, certs, fleet, client_end):
    with open(fleet.greeter_record) as f:
        before = f.read()
    c = BioClient(certs.client_ctx(), "vm3.vm.test", 8443)
    c.handshake()
    got, end = c.read(limit=1 << 20)
    assert got == HELLO, ("greeting: %r (end=%s)" % (got, end), live_gate.tail())
    assert end in ("close_notify", "eof"), (
        "after the VM half-closed, expected close_notify or EOF, got %s" % end,
        live_gate.tail())
    # the client -> VM direction must still work
    data = os.urandom(300_000)
    c.send(data)
    if client_end == "fin":
        c.shutdown_tcp_write()
    else:
        c.close_notify()
    rec = wait_record(fleet.greeter_record, before)
    closed = c.wait_tcp_eof(timeout=10)
    c.close()
    want = "%s %d\n" % (hashlib.sha256(data).hexdigest(), len(data))
    assert rec == want, ("the VM did not receive the client's bytes after its own "
                         "half-close: recorded %r, want %r (vm->client end=%s)"
                         % (rec, want, end), live_gate.tail())
    assert closed, "vmgate did not close the connection after both sides ended\n" + \
        live_gate.tail()
    return end


def test_vm_halfclose_then_client_sends_fin(live_gate, certs, fleet):
    vm_halfclose(live_gate, certs, fleet, "fin")


def test_vm_halfclose_then_client_close_notify(live_gate, certs, fleet):
    vm_halfclose(live_gate, certs, fleet, "close_notify")


def test_vm_halfclose_is_close_notify(live_gate, certs, fleet):
    """The VM's FIN reaches the client as a TLS close_notify, not a bare
    TCP FIN (a bare FIN would look like a truncation attack)."""
    end = vm_halfclose(live_gate, certs, fleet, "fin")
    assert end == "close_notify", end
