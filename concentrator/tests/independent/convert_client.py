"""An independent RFC 8803 Convert client for the concentrator's tests: Python's struct,
hmac and hashlib only, none of mpbond's crates, written from docs/PROTOCOL.md.

usage: convert_client.py CONCENTRATOR_IP PORT CLIENT_ID KEY_HEX DEST_IP DEST_PORT [DEST_IP DEST_PORT]...

Sends a sealed Connect request for each destination, one connection each, in order, and
prints each reply as hex on a line of its own ("" if the concentrator closed without a
byte). Before that it checks itself against the worked example of
docs/PROTOCOL.md, so a wrong encoder fails loudly instead of testing nothing.
"""

import hashlib
import hmac
import ipaddress
import os
import socket
import struct
import sys
import time

MAGIC = 0x2263


def seal_connect(dest_ip, dest_port, client, key, timestamp, nonce):
    ip = ipaddress.ip_address(dest_ip)
    if ip.version == 4:
        ip = ipaddress.IPv6Address("::ffff:" + str(ip))
    connect = struct.pack("!BBH", 0x0A, 5, dest_port) + ip.packed
    cid = client.encode("ascii")
    value = struct.pack("!BB", 1, len(cid)) + cid + struct.pack("!Q", timestamp) + nonce
    tag_at = len(value)
    value += bytes(16)
    value += bytes(-(4 + len(value)) % 4)
    cookie = struct.pack("!BBH", 0x16, (4 + len(value)) // 4, 0) + value
    total = 4 + len(connect) + len(cookie)
    message = bytearray(struct.pack("!BBH", 1, total // 4, MAGIC) + connect + cookie)
    tag = hmac.new(key, bytes(message), hashlib.sha256).digest()[:16]
    start = 4 + len(connect) + 4 + tag_at
    message[start : start + 16] = tag
    return bytes(message)


def check_worked_example():
    wire = seal_connect("203.0.113.10", 443, "home", bytes(range(32)), 1700000000, bytes(range(1, 13)))
    assert len(wire) == 72 and wire[:4] == bytes.fromhex("01122263"), wire.hex()
    assert bytes.fromhex("25ff57041fca77fa89d86871fe0020d9") in wire, wire.hex()


def ask(conc_ip, conc_port, dest_ip, dest_port, client, key):
    wire = seal_connect(dest_ip, int(dest_port), client, key, int(time.time()), os.urandom(12))
    with socket.create_connection((conc_ip, int(conc_port)), timeout=20) as s:
        s.sendall(wire)
        reply = b""
        try:
            while len(reply) < 8:
                chunk = s.recv(8 - len(reply))
                if not chunk:
                    break
                reply += chunk
                if reply[:2] == bytes.fromhex("0101"):
                    break
        except ConnectionResetError:
            pass
    return reply.hex()


def main():
    conc_ip, conc_port, client, key_hex = sys.argv[1:5]
    dests = sys.argv[5:]
    assert dests and len(dests) % 2 == 0, __doc__
    check_worked_example()
    for dest_ip, dest_port in zip(dests[0::2], dests[1::2]):
        print(ask(conc_ip, conc_port, dest_ip, dest_port, client, bytes.fromhex(key_hex)))


main()
