"""An independent client for the concentrator's probe datagrams: Python's struct, hmac,
hashlib and socket only, none of mpbond's crates, written from docs/PROTOCOL.md
("Probe datagrams (UDP)").

usage: probe_client.py CONCENTRATOR_IP PORT CLIENT_ID KEY_HEX KIND [COUNT]

KIND is one of: valid, wrong_key, unknown_client, stale, flipped, short, long,
garbage, convert. Sends COUNT (default 1) datagrams of that kind, one after the other,
and prints one line per datagram: "answer" (a reply whose stamp and tag check out under
KEY_HEX), "bad_answer" (something else came back) or "silence" (nothing within 0.5 s).
Before that it checks itself against the worked example, so a wrong encoder fails
loudly instead of testing nothing.
"""

import hashlib
import hmac
import socket
import struct
import sys
import time


def request(client, key, stamp):
    cid = client.encode("ascii")
    body = struct.pack("!BB", 0xB1, len(cid)) + cid + struct.pack("!Q", stamp)
    return body + hmac.new(key, body, hashlib.sha256).digest()[:16]


def reply_ok(reply, key, stamp, request_tag):
    if len(reply) != 25 or reply[0] != 0xB2:
        return False
    if reply[1:9] != struct.pack("!Q", stamp):
        return False
    mac = hmac.new(key, bytes([0xB2]) + reply[1:9] + request_tag, hashlib.sha256).digest()[:16]
    return hmac.compare_digest(mac, reply[9:])


def self_check():
    key = bytes(range(32))
    wire = request("home", key, 1_700_000_000_000)
    want = "b104686f6d650000018bcfe568007b0c218c4f5bc58cf8d68959202c05e7"
    assert wire.hex() == want, wire.hex()
    reply = bytes.fromhex("b20000018bcfe56800f999dbf213fc81fe6c3f93d4e2f3fe56")
    assert reply_ok(reply, key, 1_700_000_000_000, wire[-16:])


def datagram(kind, client, key, stamp):
    if kind == "valid":
        return request(client, key, stamp)
    if kind == "wrong_key":
        return request(client, bytes(32), stamp)
    if kind == "unknown_client":
        return request("stranger", key, stamp)
    if kind == "stale":
        return request(client, key, stamp - 3_600_000)
    if kind == "flipped":
        wire = bytearray(request(client, key, stamp))
        wire[len(wire) // 2] ^= 1
        return bytes(wire)
    if kind == "short":
        return request(client, key, stamp)[:-1]
    if kind == "long":
        return request(client, key, stamp) + b"\x00"
    if kind == "garbage":
        return b"GET / HTTP/1.1\r\n\r\n"
    if kind == "convert":
        return bytes([1, 1, 0x22, 0x63])
    raise SystemExit("unknown kind " + kind)


def main():
    self_check()
    ip, port, client, key_hex, kind = sys.argv[1:6]
    count = int(sys.argv[6]) if len(sys.argv) > 6 else 1
    key = bytes.fromhex(key_hex)
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.settimeout(0.5)
    sock.connect((ip, int(port)))
    stamp = int(time.time() * 1000)
    for _ in range(count):
        stamp += 1
        wire = datagram(kind, client, key, stamp)
        sock.send(wire)
        try:
            reply = sock.recv(512)
        except socket.timeout:
            print("silence")
            continue
        ok = reply_ok(reply, key, stamp, wire[-16:]) and len(reply) < len(wire)
        print("answer" if ok else "bad_answer")


if __name__ == "__main__":
    main()
