"""9. Half-close in both directions, with a MemoryBIO client that controls
TLS close_notify and TCP FIN separately."""

import hashlib
import os
import socket
import struct
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


def fins_from(cap, sport, dport):
    """Payload lengths of the TCP segments with FIN from sport to dport
    that the packet socket |cap| (on lo) has seen, each once."""
    out = []
    while True:
        try:
            frame, addr = cap.recvfrom(1 << 16)
        except BlockingIOError:
            return out
        if addr[2] == socket.PACKET_OUTGOING:   # lo shows each twice
            continue
        ip = frame[14:]
        if ip[0] >> 4 == 4 and ip[9] == socket.IPPROTO_TCP:
            ihl, total = (ip[0] & 15) * 4, struct.unpack("!H", ip[2:4])[0]
            tcp, tcp_len = ip[ihl:], total - ihl
        elif ip[0] >> 4 == 6 and ip[6] == socket.IPPROTO_TCP:
            tcp, tcp_len = ip[40:], struct.unpack("!H", ip[4:6])[0]
        else:
            continue
        s, d = struct.unpack("!HH", tcp[:4])
        if (s, d) == (sport, dport) and tcp[13] & 0x01:
            out.append(tcp_len - (tcp[12] >> 4) * 4)


def test_vm_halfclose_last_records_ride_with_the_fin(live_gate, certs, fleet):
    """After the VM's FIN, vmgate's last records to the client (at least the
    close_notify) and its FIN leave in one segment, not a data segment and
    then a bare FIN: one segment, one wake-up and one ACK fewer per
    connection (MSG_MORE on the last sends, core/relay.c)."""
    cap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    try:
        cap.bind(("lo", 0))
        cap.setblocking(False)
        c = BioClient(certs.client_ctx(), "vm3.vm.test", 8443)
        c.handshake()
        got, end = c.read(limit=1 << 20)
        closed = c.wait_tcp_eof(timeout=10)
        c.close()
        assert got == HELLO and end == "close_notify" and closed, (
            got, end, closed, live_gate.tail())
        fins = fins_from(cap, 8443, c.local_port)
    finally:
        cap.close()
    assert len(fins) == 1, ("want one FIN segment from vmgate, saw payload "
                            "lengths %r" % fins)
    assert fins[0] > 0, ("vmgate's FIN came in a segment of its own after "
                         "the last records")
