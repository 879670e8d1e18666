"""A VM service on many ports at once, for tests/e2e/test_anyport.py.

    e2e_multiport.py PORT|[ADDR]:PORT...

Listens on [::]:PORT (dual-stack) or [ADDR]:PORT for each one given, and
for each
connection writes "port=N\\n", N being the port the connection came to
(its local address), then echoes every byte until the client closes its
side. Prints "ready" once every port listens. One thread, selectors.
"""

import selectors
import socket
import sys


def main():
    sel = selectors.DefaultSelector()
    binds = set()
    for a in sys.argv[1:]:
        if a.startswith("["):
            host, _, port = a[1:].partition("]:")
            binds.add((host, int(port)))
        else:
            binds.add(("::", int(a)))
    for host, p in sorted(binds):
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, p))
        s.listen(128)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, None)
    print("ready", flush=True)
    while True:
        for key, _ in sel.select():
            s = key.fileobj
            if key.data is None:
                try:
                    c, _ = s.accept()
                except BlockingIOError:
                    continue
                port = c.getsockname()[1]
                c.setblocking(True)
                c.sendall(b"port=%d\n" % port)
                c.setblocking(False)
                sel.register(c, selectors.EVENT_READ, port)
                continue
            try:
                data = s.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                sel.unregister(s)
                s.close()
                continue
            s.setblocking(True)
            try:
                s.sendall(data)
            except OSError:
                sel.unregister(s)
                s.close()
                continue
            s.setblocking(False)


if __name__ == "__main__":
    main()
