"""An independent standard RFC 8803 Convert client (a Tessares-style converter) for the
concentrator's tests: Python's struct only, none of mpbond's crates, written from
RFC 8803 section 4. It sends no HMAC cookie: a static Cookie TLV, or none.

usage: standard_client.py CONCENTRATOR_IP PORT KIND DEST_IP DEST_PORT [COOKIE]

KIND is `connect`, `info` or `connect-exth` (a Connect with an Extended TCP Header TLV,
which only a converter may send). Prints the reply as hex ("" if the concentrator
closed without a byte); after a success reply to a Connect it sends "ping", half-closes
and prints what came back after a space.
"""

import ipaddress
import socket
import struct
import sys

MAGIC = 0x2263


def tlv(kind, value):
    """A TLV with two reserved bytes after the length (Cookie, Info, Extended TCP Header),
    zero padded to 32 bits."""
    body = struct.pack("!H", 0) + value
    body += bytes(-(2 + len(body)) % 4)
    return struct.pack("!BB", kind, (2 + len(body)) // 4) + body


def connect_tlv(dest_ip, dest_port):
    ip = ipaddress.ip_address(dest_ip)
    if ip.version == 4:
        ip = ipaddress.IPv6Address("::ffff:" + str(ip))
    return struct.pack("!BBH", 0x0A, 5, dest_port) + ip.packed


def message(tlvs):
    total = 4 + sum(len(t) for t in tlvs)
    return struct.pack("!BBH", 1, total // 4, MAGIC) + b"".join(tlvs)


def check_encoder():
    # RFC 8803: a Connect TLV is 20 bytes; IPv4 travels as ::ffff:a.b.c.d.
    c = connect_tlv("203.0.113.10", 443)
    assert c.hex() == "0a0501bb00000000000000000000ffffcb00710a", c.hex()
    assert tlv(0x16, b"abc").hex() == "1602000061626300"
    assert message([tlv(0x01, b"")]).hex() == "0102226301010000"


def recv_exact(s, n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            break
        out += chunk
    return out


def main():
    conc_ip, conc_port, kind, dest_ip, dest_port = sys.argv[1:6]
    cookie = sys.argv[6].encode("ascii") if len(sys.argv) > 6 else None
    check_encoder()
    if kind == "info":
        tlvs = [tlv(0x01, b"")]
    else:
        tlvs = [connect_tlv(dest_ip, int(dest_port))]
        if kind == "connect-exth":
            tlvs.append(tlv(0x14, bytes(18)))
    if cookie is not None:
        tlvs.append(tlv(0x16, cookie))
    with socket.create_connection((conc_ip, int(conc_port)), timeout=20) as s:
        s.sendall(message(tlvs))
        try:
            head = recv_exact(s, 4)
            rest = recv_exact(s, head[1] * 4 - 4) if len(head) == 4 else b""
        except ConnectionResetError:
            head, rest = b"", b""
        reply = head + rest
        out = reply.hex()
        if kind == "connect" and reply == bytes.fromhex("01012263"):
            s.sendall(b"ping")
            s.shutdown(socket.SHUT_WR)
            echoed = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                echoed += chunk
            out += " " + echoed.decode("ascii", "replace")
    print(out)


main()
