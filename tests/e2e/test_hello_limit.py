"""The ClientHello limit a build was made with (Kconfig MAX_CLIENTHELLO_BYTES)
against a gate with no `limits:` key.

The runtime default of limits.max_clienthello_bytes is 16384 or the build's
cap, whichever is smaller, and each worker's reassembly scratch is sized to
it. `make test` also runs this file on an ASan build with
MAX_CLIENTHELLO_BYTES=4096 (`make e2e-hello4k`): there a 12 KiB hello once
overflowed a 4 KiB heap buffer; now it gets decode_error and the worker
keeps serving. The hello comes in 1,000-byte records, so that it is joined
in the scratch buffer. On the default build the same hello is within the limit and
is answered with a ServerHello.
"""
import re
import socket
import subprocess

from e2e_net import free_ports
from e2e_util import (Hello, echo_roundtrip, peer_re, plaintext_alerts, read_answer,
                      server_flight_in)

HELLO_BYTES = 12 * 1024
DECODE_ERROR = 50


def build_cap(gate_bin):
    out = subprocess.run(gate_bin + ["--version"], capture_output=True, text=True,
                         check=True).stdout
    m = re.search(r"max ClientHello (\d+) bytes", out)
    assert m, "vmgate --version does not name its ClientHello cap: %r" % out
    return int(m.group(1))


def test_default_limit_follows_the_build(private_gate, gate_bin, certs, fleet):
    cap = build_cap(gate_bin)
    port = free_ports(1)[0]
    g = private_gate("hellocap", [port], port_map="{ %d: 8080 }" % port,
                     allowed_ports="[%d]" % port)
    hello = Hello().pad(HELLO_BYTES)
    assert len(hello.message()) == HELLO_BYTES
    mark = g.mark()
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    lport = s.getsockname()[1]
    # Split over records so the parser joins it in the scratch buffer.
    s.sendall(hello.records(chunk=1000))
    data, how = read_answer(s, timeout=5, done=server_flight_in)
    s.close()
    if cap < HELLO_BYTES:
        assert plaintext_alerts(data) == [(2, DECODE_ERROR)], (
            "expected one fatal decode_error alert", how, data[:64], g.tail(since=mark))
        g.wait_log(r"WARN reject .*%s.*reason=too_large\b" % peer_re(lport),
                   timeout=5, since=mark)
    else:
        # Routed and answered: the first record back is a handshake record
        # (ServerHello), not an alert.
        assert data[:1] == b"\x16" and data[5:6] == b"\x02", (
            "expected a ServerHello", how, data[:64], g.tail(since=mark))
    # The worker that took the hello still serves (both workers, a few
    # connections each, so the one that saw it is among them).
    for _ in range(4):
        assert echo_roundtrip(certs, port=port) < 3
    assert g.proc.poll() is None, g.tail(since=mark)
