"""2. HTTP/2 via ALPN h2 to a VM speaking cleartext HTTP/2 (nghttpd --no-tls):
curl, then a python h2 client on an ssl socket."""

import socket

import h2.config
import h2.connection
import h2.events

from conftest import H2_BODY
from e2e_util import curl, tls_connect


def test_curl_http2(live_gate, certs):
    r = curl(["--http2", "--cacert", certs.ca, "--resolve", "vm1.vm.test:8443:127.0.0.1",
              "-w", "|VER=%{http_version}", "https://vm1.vm.test:8443/hello.txt"], timeout=10)
    assert r.returncode == 0, (r, live_gate.tail())
    body, ver = r.stdout.rsplit(b"|VER=", 1)
    assert ver == b"2", ("curl did not speak HTTP/2 (ALPN h2 not negotiated?)", r,
                         live_gate.tail())
    assert body == H2_BODY, r


def test_curl_http11_alpn(live_gate, certs):
    """A client that offers only http/1.1 gets it (and an HTTP/1.1 VM)."""
    r = curl(["--http1.1", "--cacert", certs.ca, "--resolve", "vm1.vm.test:3000:127.0.0.1",
              "-w", "|VER=%{http_version}", "https://vm1.vm.test:3000/health"], timeout=10)
    assert r.returncode == 0 and r.stdout == b"ok vm1\n|VER=1.1", (r, live_gate.tail())


def test_python_h2_client(live_gate, certs):
    ctx = certs.client_ctx(alpn=["h2"])
    s = tls_connect(ctx, "vm1.vm.test", 8443)
    assert s.selected_alpn_protocol() == "h2", s.selected_alpn_protocol()
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    s.sendall(conn.data_to_send())
    streams = {}
    for i in range(3):
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, [(":method", "GET"), (":path", "/hello.txt"),
                                (":scheme", "https"), (":authority", "vm1.vm.test:8443")],
                          end_stream=True)
        streams[sid] = {"status": None, "body": b"", "done": False}
    s.sendall(conn.data_to_send())
    s.settimeout(10)
    try:
        while not all(v["done"] for v in streams.values()):
            data = s.recv(65536)
            assert data, "connection closed before all responses arrived: %r\n%s" % (
                streams, live_gate.tail())
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived):
                    streams[ev.stream_id]["status"] = dict(ev.headers)[b":status"]
                elif isinstance(ev, h2.events.DataReceived):
                    streams[ev.stream_id]["body"] += ev.data
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    streams[ev.stream_id]["done"] = True
            s.sendall(conn.data_to_send())
    except socket.timeout:
        raise AssertionError("h2 responses timed out: %r\n%s" % (streams, live_gate.tail()))
    for sid, v in streams.items():
        assert v["status"] == b"200" and v["body"] == H2_BODY, (sid, v)
    conn.close_connection()
    s.sendall(conn.data_to_send())
    s.close()
