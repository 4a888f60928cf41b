#!/usr/bin/env python3
"""A PCP client (RFC 6887) for the lab tests, written from the RFC alone: it shares no code with
the router (run it inside a LAN namespace with `lab exec`).

  pcp.py [OPTIONS] map PROTO INTERNAL_PORT SUGGESTED_EXTERNAL_PORT LIFETIME

Sends one MAP request (section 11.1) to the server's port 5351 and prints the response as one
line of KEY=VALUE fields:

  result=CODE name=RESULT_NAME version=V opcode=OP lifetime=SECONDS epoch=SECONDS
  nonce=HEX protocol=P internal_port=N external_port=N external_addr=ADDR len=BYTES

(the MAP fields only when the response carries a MAP payload). PROTO is tcp, udp or an IANA
protocol number; LIFETIME 0 deletes the mapping (section 15). Exit status 0 when a response came,
3 when none did within --timeout.

Options:
  --server ADDR       PCP server (default 192.168.1.1)
  --nonce HEX         the 12-octet mapping nonce (default: random); a renewal or a delete must
                      repeat the nonce of the request that created the mapping (section 11.3)
  --client ADDR       the PCP client IP address field (default: the source address this host
                      uses towards the server, as section 8.1 asks)
  --version V         the version octet (default 2; anything else tests section 9)
  --opcode N          the opcode (default 1, MAP)
  --r-bit             set the R bit, as in a response (a server drops these, section 8.3)
  --option CODE[:HEX] append an option (section 7.3), padded to 4 octets; repeatable
  --truncate N        send only the first N octets of the request
  --append N          append N zero octets
  --timeout SECONDS   give up after this long (default 5); the request is retransmitted with the
                      same nonce every 0.5 s until then (section 8.1.1 retransmits too, slower)

A response is accepted only from the server's port 5351, with version 2 (or any version for
UNSUPP_VERSION, section 9), the R bit set, our opcode, and, when it carries a MAP payload, our
nonce (section 11.4); anything else is reported on stderr and waited past.
"""
import ipaddress
import os
import socket
import sys
import time

SERVER_PORT = 5351
RESULTS = [
    "SUCCESS",
    "UNSUPP_VERSION",
    "NOT_AUTHORIZED",
    "MALFORMED_REQUEST",
    "UNSUPP_OPCODE",
    "UNSUPP_OPTION",
    "MALFORMED_OPTION",
    "NETWORK_FAILURE",
    "NO_RESOURCES",
    "UNSUPP_PROTOCOL",
    "USER_EX_QUOTA",
    "CANNOT_PROVIDE_EXTERNAL",
    "ADDRESS_MISMATCH",
    "EXCESSIVE_REMOTE_PEERS",
]
PROTOCOLS = {"tcp": 6, "udp": 17}


def v4_mapped(addr):
    """An IPv4 address as the 16-octet IPv4-mapped IPv6 address PCP carries (section 5)."""
    return b"\x00" * 10 + b"\xff\xff" + ipaddress.IPv4Address(addr).packed


def from_v6(octets):
    a = ipaddress.IPv6Address(octets)
    return str(a.ipv4_mapped) if a.ipv4_mapped else str(a)


def request(version, opcode, r_bit, lifetime, client, nonce, proto, iport, eport, options):
    # Common request header (section 7.1): version, R + opcode, 16 reserved bits, requested
    # lifetime, client IP address.
    head = bytes([version, (0x80 if r_bit else 0) | opcode, 0, 0])
    head += lifetime.to_bytes(4, "big") + v4_mapped(client)
    # MAP request payload (section 11.1): nonce, protocol, 24 reserved bits, internal port,
    # suggested external port, suggested external address (all zeros: no preference).
    payload = nonce + bytes([proto, 0, 0, 0]) + iport.to_bytes(2, "big")
    payload += eport.to_bytes(2, "big") + bytes(16)
    opts = b""
    for code, data in options:
        # Option header (section 7.3): code, reserved, length of the data (unpadded).
        opts += bytes([code, 0]) + len(data).to_bytes(2, "big") + data
        opts += bytes(-len(data) % 4)
    return head + payload + opts


def parse(b):
    """The response header (section 7.2) and, when present, the MAP payload (section 11.2)."""
    r = {
        "result": b[3],
        "name": RESULTS[b[3]] if b[3] < len(RESULTS) else "UNKNOWN",
        "version": b[0],
        "r": b[1] >> 7,
        "opcode": b[1] & 0x7F,
        "lifetime": int.from_bytes(b[4:8], "big"),
        "epoch": int.from_bytes(b[8:12], "big"),
    }
    if r["opcode"] == 1 and len(b) >= 60:
        m = b[24:60]
        r["nonce"] = m[0:12].hex()
        r["protocol"] = m[12]
        r["internal_port"] = int.from_bytes(m[16:18], "big")
        r["external_port"] = int.from_bytes(m[18:20], "big")
        r["external_addr"] = from_v6(m[20:36])
    r["len"] = len(b)
    return r


def main(argv):
    server, nonce, client, version, opcode, r_bit = "192.168.1.1", None, None, 2, 1, False
    options, truncate, append, timeout = [], None, 0, 5.0
    args = argv[1:]
    while args and args[0].startswith("--"):
        flag = args.pop(0)
        if flag == "--r-bit":
            r_bit = True
            continue
        value = args.pop(0)
        if flag == "--server":
            server = value
        elif flag == "--nonce":
            nonce = bytes.fromhex(value)
        elif flag == "--client":
            client = value
        elif flag == "--version":
            version = int(value)
        elif flag == "--opcode":
            opcode = int(value)
        elif flag == "--option":
            code, _, data = value.partition(":")
            options.append((int(code), bytes.fromhex(data)))
        elif flag == "--truncate":
            truncate = int(value)
        elif flag == "--append":
            append = int(value)
        elif flag == "--timeout":
            timeout = float(value)
        else:
            sys.exit(f"unknown option {flag}\n{__doc__}")
    if len(args) != 5 or args[0] != "map":
        sys.exit(__doc__)
    proto = PROTOCOLS.get(args[1].lower()) or int(args[1])
    iport, eport, lifetime = int(args[2]), int(args[3]), int(args[4])
    nonce = nonce if nonce is not None else os.urandom(12)
    if len(nonce) != 12:
        sys.exit("the nonce is 12 octets (24 hex digits)")

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((server, SERVER_PORT))
    if client is None:
        client = s.getsockname()[0]
    msg = request(version, opcode, r_bit, lifetime, client, nonce, proto, iport, eport, options)
    if truncate is not None:
        msg = msg[:truncate]
    msg += bytes(append)

    end = time.time() + timeout
    while time.time() < end:
        s.send(msg)
        resend = min(end, time.time() + 0.5)
        while True:
            left = resend - time.time()
            if left <= 0:
                break
            s.settimeout(left)
            try:
                b = s.recv(2048)
            except socket.timeout:
                break
            except ConnectionRefusedError:
                continue
            if len(b) < 24:
                print(f"ignored: {len(b)}-octet datagram", file=sys.stderr)
                continue
            r = parse(b)
            if not r["r"] or r["opcode"] != opcode & 0x7F:
                print(f"ignored: not our response: {r}", file=sys.stderr)
                continue
            if r["version"] != 2 and r["result"] != 1:
                print(f"ignored: version {r['version']}: {r}", file=sys.stderr)
                continue
            if "nonce" in r and r["nonce"] != nonce.hex():
                print(f"ignored: nonce mismatch: {r}", file=sys.stderr)
                continue
            print(" ".join(f"{k}={v}" for k, v in r.items()))
            return 0
    print("no-response")
    return 3


if __name__ == "__main__":
    sys.exit(main(sys.argv))
