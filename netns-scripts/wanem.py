#!/usr/bin/env python3
"""A WAN link emulator for kernels without sch_netem: relays Ethernet frames between two
interfaces (AF_PACKET), delaying each by DELAY_MS and dropping LOSS_PCT percent at random, in
each direction. The lab runs it in its own middle namespace P-wan between the router's wan0 and
the internet's isp0 when `lab up --delay/--loss` is given and `tc netem` is unavailable.

  wanem.py IF_A IF_B DELAY_MS LOSS_PCT [SEED]

With WANEM_READY=PATH in the environment it creates PATH once both interfaces are open, so the
caller can wait until frames are relayed (the lab does; a ping sent before that is lost).
"""
import os
import heapq
import random
import select
import socket
import sys
import time

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


def open_if(name):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((name, 0))
    s.setblocking(False)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    return s


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    ifa, ifb = sys.argv[1], sys.argv[2]
    delay = float(sys.argv[3]) / 1000.0
    loss = float(sys.argv[4]) / 100.0
    rng = random.Random(int(sys.argv[5]) if len(sys.argv) > 5 else None)
    a, b = open_if(ifa), open_if(ifb)
    ready = os.environ.get("WANEM_READY")
    if ready:
        with open(ready, "w") as f:
            f.write("%d\n" % os.getpid())
    peer = {a: b, b: a}
    queue = []  # (due, seq, out_socket, frame)
    seq = 0
    poller = select.poll()
    poller.register(a, select.POLLIN)
    poller.register(b, select.POLLIN)
    while True:
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, _, out, frame = heapq.heappop(queue)
            try:
                out.send(frame)
            except OSError:
                pass  # e.g. the link went down during teardown: the frame is lost, as on a wire
        timeout = -1 if not queue else max(0, int((queue[0][0] - now) * 1000))
        for fd, _ in poller.poll(timeout):
            src = a if fd == a.fileno() else b
            while True:
                try:
                    frame, addr = src.recvfrom(65535)
                except BlockingIOError:
                    break
                if addr[2] == PACKET_OUTGOING:
                    continue  # our own transmissions
                if loss and rng.random() < loss:
                    continue
                seq += 1
                heapq.heappush(queue, (time.monotonic() + delay, seq, peer[src], frame))


if __name__ == "__main__":
    main()
