#!/usr/bin/env python3
"""DNS rebinding, as the router sees it (run in a LAN namespace with `lab exec`).

  rebind.py LISTEN_ADDR PORT PAGE TARGET_ADDR TARGET_PORT

Listens on LISTEN_ADDR:PORT, the address the browser resolves the attacker's name to. `GET
/rebind.html` is the attacker's server answering with PAGE; every other connection goes to
TARGET_ADDR:TARGET_PORT byte for byte, as if the name now resolved to the router: the router
gets the browser's requests with the attacker's name in Host.
"""
import socket
import sys
import threading

listen, port, page, target, tport = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
body = open(page, "rb").read()


def pipe(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    try:
        b.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def handle(c):
    head = b""
    while b"\r\n\r\n" not in head and len(head) < 65536:
        d = c.recv(65536)
        if not d:
            c.close()
            return
        head += d
    if head.startswith(b"GET /rebind.html "):
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
        c.close()
        return
    u = socket.create_connection((target, tport), timeout=5)
    u.sendall(head)
    threading.Thread(target=pipe, args=(u, c), daemon=True).start()
    pipe(c, u)


s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((listen, port))
s.listen(64)
print("ready", flush=True)
while True:
    conn, _ = s.accept()
    threading.Thread(target=handle, args=(conn,), daemon=True).start()
