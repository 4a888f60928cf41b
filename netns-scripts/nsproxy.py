#!/usr/bin/env python3
"""An HTTP proxy on 127.0.0.1 whose outbound connections start inside a lab namespace.

  nsproxy.py --listen 127.0.0.1:PORT --netns NAMESPACE [--to HOST:PORT]

It binds its listening socket in the namespace it was started in (the host's; only 127.0.0.1),
then enters NAMESPACE (setns(2) on /run/netns/NAMESPACE) before it opens any other socket, so a
browser on this machine sees the lab the way a host in that namespace does: through the
internet namespace, `http://<WAN address>:8080/` and every camera link; through the viewer's, the
LAN addresses and the router's admin page. Nothing is added to the host's network.

Without --to it is a forward proxy (point the browser's HTTP proxy at it: absolute-URI requests
and CONNECT). With --to it forwards every connection to HOST:PORT as it is.
"""
import ctypes
import os
import socket
import sys
import threading

CLONE_NEWNET = 0x40000000
MAX_HEAD = 64 * 1024


def enter_netns(name):
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        sys.exit(f"nsproxy: setns({name}): {os.strerror(err)}")
    os.close(fd)


def pipe(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (dst,):
            try:
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass


def splice(a, b):
    t = threading.Thread(target=pipe, args=(b, a), daemon=True)
    t.start()
    pipe(a, b)
    t.join()
    a.close()
    b.close()


def reply(conn, status, text):
    body = (text + "\n").encode()
    conn.sendall(
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
        f"Connection: close\r\n\r\n".encode() + body
    )
    conn.close()


def serve_proxy(conn):
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = conn.recv(4096)
        if not chunk:
            conn.close()
            return
        head += chunk
        if len(head) > MAX_HEAD:
            return reply(conn, "431 Request Header Fields Too Large", "request head too large")
    head, rest = head.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    try:
        method, target, version = lines[0].split(" ", 2)
    except ValueError:
        return reply(conn, "400 Bad Request", "malformed request line")
    if method == "CONNECT":
        host, _, port = target.rpartition(":")
        try:
            up = socket.create_connection((host, int(port)), timeout=5)
        except (OSError, ValueError) as e:
            return reply(conn, "502 Bad Gateway", f"cannot reach {target}: {e}")
        up.settimeout(None)
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        up.sendall(rest)
        return splice(conn, up)
    if not target.startswith("http://"):
        return reply(conn, "400 Bad Request", "this is a proxy: ask for an absolute http:// URL")
    hostport, _, path = target[len("http://"):].partition("/")
    host, _, port = hostport.partition(":")
    try:
        up = socket.create_connection((host, int(port or 80)), timeout=5)
    except (OSError, ValueError) as e:
        return reply(conn, "502 Bad Gateway", f"cannot reach {hostport}: {e}")
    up.settimeout(None)
    headers = [h for h in lines[1:] if not h.lower().startswith(("proxy-connection:", "connection:"))]
    # One request per upstream connection keeps the proxy simple and streams (MJPEG) intact.
    out = [f"{method} /{path} {version}"] + headers + ["Connection: close", "", ""]
    up.sendall("\r\n".join(out).encode("latin-1") + rest)
    splice(conn, up)


def serve_forward(conn, to):
    host, _, port = to.rpartition(":")
    try:
        up = socket.create_connection((host, int(port)), timeout=5)
    except OSError as e:
        return reply(conn, "502 Bad Gateway", f"cannot reach {to}: {e}")
    up.settimeout(None)
    splice(conn, up)


def main(argv):
    args = dict(zip(argv[1::2], argv[2::2]))
    if "--listen" not in args or "--netns" not in args:
        sys.exit(__doc__)
    host, _, port = args["--listen"].rpartition(":")
    if host not in ("127.0.0.1", "localhost"):
        sys.exit("nsproxy: listens on 127.0.0.1 only")
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", int(port)))
    lsock.listen(64)
    enter_netns(args["--netns"])  # every socket from here on lives in the lab
    print(f"nsproxy: 127.0.0.1:{port} -> namespace {args['--netns']}", flush=True)
    to = args.get("--to")
    while True:
        conn, _ = lsock.accept()
        target = serve_forward if to else serve_proxy
        threading.Thread(target=target, args=(conn, to) if to else (conn,), daemon=True).start()


if __name__ == "__main__":
    main(sys.argv)
