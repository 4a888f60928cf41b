#!/usr/bin/env python3
"""Small UDP tools for the lab tests (run inside a namespace with `lab exec`).

  udp.py listen PORT SECONDS [--open HOST:PORT] [--out FILE] [--until PAYLOAD]
      Bind 0.0.0.0:PORT; optionally send b"open" to HOST:PORT first (creating the NAT mapping);
      then print every datagram received as "PAYLOAD FROM_ADDR:FROM_PORT", for SECONDS at most,
      or until PAYLOAD arrives.
  udp.py send SRC_ADDR SRC_PORT DST_ADDR DST_PORT PAYLOAD [SRC_ADDR SRC_PORT PAYLOAD]...
      Send datagrams in order (50 ms apart), each from its SRC_ADDR:SRC_PORT (0 = any port).
  udp.py echo ADDR PORT
      Echo server: answer every datagram with "PAYLOAD FROM_ADDR:FROM_PORT" (what it saw).
  udp.py ask SRC_PORT DST_ADDR DST_PORT PAYLOAD [SECONDS]
      Send and print the reply; resend every 0.5 s (the server may still be starting); exit 1
      after SECONDS (default 10) without one.
"""
import socket
import sys
import time


def listen(port, seconds, opener=None, out=None, until=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    if opener:
        host, p = opener.rsplit(":", 1)
        s.sendto(b"open", (host, int(p)))
    sink = open(out, "w", buffering=1) if out else sys.stdout
    print("ready", file=sink, flush=True)
    end = time.time() + seconds
    while True:
        left = end - time.time()
        if left <= 0:
            break
        s.settimeout(left)
        try:
            data, (a, p) = s.recvfrom(2048)
        except socket.timeout:
            break
        text = data.decode(errors="replace")
        print(f"{text} {a}:{p}", file=sink, flush=True)
        if until is not None and text == until:
            break


def send(dst, dport, datagrams):
    for i, (src, sport, payload) in enumerate(datagrams):
        if i:
            time.sleep(0.05)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((src, sport))
        s.sendto(payload.encode(), (dst, dport))
        s.close()


def echo(addr, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, port))
    while True:
        data, (a, p) = s.recvfrom(65535)
        s.sendto(data + f" {a}:{p}".encode(), (a, p))


def ask(sport, dst, dport, payload, seconds=10.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", sport))
    s.settimeout(0.5)
    for _ in range(max(1, round(seconds / 0.5))):
        s.sendto(payload.encode(), (dst, dport))
        try:
            data, _ = s.recvfrom(65535)
        except socket.timeout:
            continue
        print(data.decode(errors="replace"))
        return
    print("no reply", file=sys.stderr)
    sys.exit(1)


def main(argv):
    cmd = argv[1]
    if cmd == "listen":
        opener = out = until = None
        rest = argv[4:]
        while rest:
            if rest[0] == "--open":
                opener = rest[1]
            elif rest[0] == "--out":
                out = rest[1]
            elif rest[0] == "--until":
                until = rest[1]
            rest = rest[2:]
        listen(int(argv[2]), float(argv[3]), opener, out, until)
    elif cmd == "send":
        first = (argv[2], int(argv[3]), argv[6])
        more = argv[7:]
        datagrams = [first] + [(more[i], int(more[i + 1]), more[i + 2]) for i in range(0, len(more) - 2, 3)]
        send(argv[4], int(argv[5]), datagrams)
    elif cmd == "echo":
        echo(argv[2], int(argv[3]))
    elif cmd == "ask":
        ask(int(argv[2]), argv[3], int(argv[4]), argv[5], *(float(a) for a in argv[6:7]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
