"""Forged-source SYNs with data, from a raw socket: Python's socket and struct only.

usage: forged_syn.py SRC_IP DST_IP DST_PORT COUNT PAYLOAD_HEX

Sends, for each of COUNT rounds, three SYNs from SRC_IP (an address the sender does not
own, routed into a black hole by the test) to DST_IP:DST_PORT, each carrying PAYLOAD in
the SYN: one without a Fast Open option (what a Fast Open client with
TCP_FASTOPEN_NO_COOKIE sends), one with an empty Fast Open option (a cookie request), and
one with a made-up 8-byte cookie. Every SYN has its own source port (drawn without
replacement: two SYNs on one port would be one request socket). Prints the number of
SYNs sent. Needs CAP_NET_RAW.
"""

import os
import random
import socket
import struct
import sys


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def tcp_options(cookie):
    mss = struct.pack("!BBH", 2, 4, 1460)
    if cookie is None:
        return mss
    fastopen = struct.pack("!BB", 34, 2 + len(cookie)) + cookie
    opts = mss + fastopen
    return opts + b"\x01" * (-len(opts) % 4)


def syn(src, dst, sport, dport, seq, cookie, payload):
    opts = tcp_options(cookie)
    offset = (20 + len(opts)) // 4
    header = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, offset << 4, 0x02, 65535, 0, 0)
    segment = header + opts + payload
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(segment))
    csum = checksum(pseudo + segment)
    segment = segment[:16] + struct.pack("!H", csum) + segment[18:]
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45, 0, 20 + len(segment), 0, 0x4000, 64, 6, 0,
        socket.inet_aton(src), socket.inet_aton(dst),
    )
    return ip + segment


def main():
    src, dst, dport, count, payload_hex = sys.argv[1:6]
    dport, count, payload = int(dport), int(count), bytes.fromhex(payload_hex)
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    raw.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    sent = 0
    ports = iter(random.SystemRandom().sample(range(20000, 60000), 3 * count))
    for _ in range(count):
        for cookie in (None, b"", os.urandom(8)):
            sport = next(ports)
            seq = int.from_bytes(os.urandom(4), "big")
            raw.sendto(syn(src, dst, sport, dport, seq, cookie, payload), (dst, 0))
            sent += 1
    print(sent)


if __name__ == "__main__":
    main()
