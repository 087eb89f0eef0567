"""An independent UDP-flow client for the concentrator's tests: Python's struct, hmac,
hashlib and socket only, none of mpbond's crates, written from docs/PROTOCOL.md
("UDP TLV", "Group TLV", "UDP flows" and "Protected flows").

usage: udp_client.py JSON

JSON names the scenario and its arguments (see `SCENARIOS` below); the result is one
JSON object on stdout. Before any scenario the encoder checks itself against the worked
examples of docs/PROTOCOL.md, so a wrong encoder fails loudly instead of testing nothing.
"""

import hashlib
import hmac
import ipaddress
import json
import os
import socket
import struct
import sys
import time

MAGIC = 0x2263
TLV_CONNECT = 0x0A
TLV_UDP = 0xD0
TLV_GROUP = 0xD1
TLV_COOKIE = 0x16
DATAGRAM = 0x00
WAIT = 20


# --- encoder ---------------------------------------------------------------------------


def group_tlv(group_id, leg, legs):
    """The Group TLV: type, length 3, leg, legs, group id (8 bytes, big-endian)."""
    return struct.pack("!BBBBQ", TLV_GROUP, 3, leg, legs, group_id)


def seal_udp(dest_ip, dest_port, client, key, timestamp, nonce, udp_tlv=True, group=None):
    """A sealed UDP request: header, Connect, UDP TLV, Group TLV (a leg, when `group` is
    (group id, leg, legs)), Cookie (format 1)."""
    ip = ipaddress.ip_address(dest_ip)
    if ip.version == 4:
        ip = ipaddress.IPv6Address("::ffff:" + str(ip))
    body = struct.pack("!BBH", TLV_CONNECT, 5, dest_port) + ip.packed
    if udp_tlv:
        body += struct.pack("!BBH", TLV_UDP, 1, 0)
    if group is not None:
        body += group_tlv(*group)
    cid = client.encode("ascii")
    value = struct.pack("!BB", 1, len(cid)) + cid + struct.pack("!Q", timestamp) + nonce
    tag_at = len(value)
    value += bytes(16)
    value += bytes(-(4 + len(value)) % 4)
    cookie = struct.pack("!BBH", TLV_COOKIE, (4 + len(value)) // 4, 0) + value
    total = 4 + len(body) + len(cookie)
    message = bytearray(struct.pack("!BBH", 1, total // 4, MAGIC) + body + cookie)
    tag = hmac.new(key, bytes(message), hashlib.sha256).digest()[:16]
    start = 4 + len(body) + 4 + tag_at
    message[start : start + 16] = tag
    return bytes(message)


def varint(value):
    """RFC 9000 §16, shortest form."""
    if value < 1 << 6:
        return struct.pack("!B", value)
    if value < 1 << 14:
        return struct.pack("!H", value | 0x4000)
    if value < 1 << 30:
        return struct.pack("!I", value | 0x80000000)
    return struct.pack("!Q", value | 0xC000000000000000)


def read_varint(buf, at):
    """(value, next offset), or None if buf ends inside the varint."""
    if at >= len(buf):
        return None
    n = 1 << (buf[at] >> 6)
    if at + n > len(buf):
        return None
    value = buf[at] & 0x3F
    for b in buf[at + 1 : at + n]:
        value = (value << 8) | b
    return value, at + n


def capsule(kind, value):
    return varint(kind) + varint(len(value)) + value


def datagram(payload, context=0):
    return capsule(DATAGRAM, varint(context) + payload)


def sequenced(seq, payload):
    """A sequenced DATAGRAM (a leg's): context id 1, seq as 4 bytes big-endian, payload."""
    return capsule(DATAGRAM, varint(1) + struct.pack("!I", seq) + payload)


def fec_source(seq, payload):
    """An FEC source DATAGRAM (a leg's, mode fec): context id 2, seq as 4 bytes, payload."""
    return capsule(DATAGRAM, varint(2) + struct.pack("!I", seq) + payload)


def fec_block(first_seq, payloads):
    """The sources of one FEC block and its repair: context id 3, first seq, count,
    XOR of the lengths, XOR of the payloads padded with zeros to the longest."""
    longest = max(len(p) for p in payloads)
    parity = bytearray(longest)
    length_xor = 0
    for p in payloads:
        length_xor ^= len(p)
        for i, b in enumerate(p):
            parity[i] ^= b
    sources = b"".join(fec_source(first_seq + i, p) for i, p in enumerate(payloads))
    header = struct.pack("!IBH", first_seq, len(payloads), length_xor)
    return sources, capsule(DATAGRAM, varint(3) + header + bytes(parity))


def check_worked_examples():
    # The Connect worked example (same cookie code, no UDP TLV).
    wire = seal_udp("203.0.113.10", 443, "home", bytes(range(32)), 1700000000, bytes(range(1, 13)), udp_tlv=False)
    assert len(wire) == 72 and wire[:4] == bytes.fromhex("01122263"), wire.hex()
    assert bytes.fromhex("25ff57041fca77fa89d86871fe0020d9") in wire, wire.hex()
    # The UDP TLV sits right after the Connect TLV and counts in Total Length.
    wire = seal_udp("203.0.113.10", 443, "home", bytes(range(32)), 1700000000, bytes(range(1, 13)))
    assert len(wire) == 76 and wire[1] == 19 and wire[24:28] == bytes.fromhex("d0010000"), wire.hex()
    # "Worked example: capsules".
    assert datagram(b"hi") == bytes.fromhex("0003006869")
    assert datagram(bytes(120))[:4] == bytes.fromhex("00407900")
    assert datagram(b"x", context=2) == bytes.fromhex("00020278")
    assert varint(65553) == bytes.fromhex("80010011")
    assert read_varint(bytes.fromhex("c2197c5eff14e88c"), 0) == (151288809941952652, 8)
    # "Worked example: a leg of a protected flow".
    wire = seal_udp(
        "203.0.113.10", 3478, "home", bytes(range(32)), 1700000000, bytes(range(1, 13)),
        group=(0x0123456789ABCDEF, 0, 2),
    )
    assert len(wire) == 88 and wire[:4] == bytes.fromhex("01162263"), wire.hex()
    assert wire[28:40] == bytes.fromhex("d10300020123456789abcdef"), wire.hex()
    assert wire.hex() == LEG_EXAMPLE, wire.hex()
    assert sequenced(0x0102, b"hi") == bytes.fromhex("00070100000102" + "6869")
    # "Worked example: an FEC block".
    sources, repair = fec_block(7, [b"hi", b"abc"])
    assert sources == bytes.fromhex("0007020000000768690008020000000861626" + "3"), sources.hex()
    assert repair == bytes.fromhex("000b0300000007020001090b63"), repair.hex()


LEG_EXAMPLE = (
    "011622630a050d9600000000000000000000ffffcb00710ad0010000d10300020123456789abcdef"
    "160c00000104686f6d65000000006553f1000102030405060708090a0b0c28a5a950757e4bffa827be4f"
    "5bec2fc40000"
)


# --- a flow ----------------------------------------------------------------------------


class Flow:
    def __init__(self, args, client=None, key=None, udp_tlv=True, wire=None, first=b"", rcvbuf=None, group=None):
        client = client or args["client"]
        key = bytes.fromhex(key or args["key"])
        self.wire = wire or seal_udp(
            args["dest_ip"], args["dest_port"], client, key, int(time.time()), os.urandom(12), udp_tlv, group
        )
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            # A fixed, small receive window (set before connecting).
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(WAIT)
        self.sock.connect((args["conc_ip"], args["conc_port"]))
        self.sock.sendall(self.wire + first)
        self.buf = b""
        self.reply = self._read_reply()

    def _read_reply(self):
        """The Convert reply as hex: "" if closed without a byte."""
        try:
            while len(self.buf) < 2 or len(self.buf) < max(self.buf[1] * 4, 4):
                chunk = self.sock.recv(4096)
                if not chunk:
                    break
                self.buf += chunk
        except ConnectionResetError:
            pass
        n = min(self.buf[1] * 4, len(self.buf)) if len(self.buf) >= 2 else len(self.buf)
        reply, self.buf = self.buf[:n], self.buf[n:]
        return reply.hex()

    @property
    def ok(self):
        return self.reply == "01012263"

    def send(self, data):
        self.sock.sendall(data)

    def next_datagram(self):
        """The next context-0 DATAGRAM's payload; unknown capsules are skipped. None at EOF."""
        while True:
            parsed = self._parse()
            if parsed is not None:
                kind, value = parsed
                if kind != DATAGRAM:
                    continue
                ctx, at = read_varint(value, 0)
                if ctx == 0:
                    return value[at:]
                continue
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                return None
            self.buf += chunk

    def next_sequenced(self):
        """The next sequenced DATAGRAM as (seq, payload); other capsules are skipped. None
        at EOF."""
        while True:
            parsed = self._parse()
            if parsed is not None:
                kind, value = parsed
                if kind != DATAGRAM:
                    continue
                ctx, at = read_varint(value, 0)
                if ctx == 1:
                    return struct.unpack("!I", value[at : at + 4])[0], value[at + 4 :]
                continue
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                return None
            self.buf += chunk

    def _parse(self):
        t = read_varint(self.buf, 0)
        if t is None:
            return None
        kind, at = t
        n = read_varint(self.buf, at)
        if n is None:
            return None
        length, at = n
        if at + length > len(self.buf):
            return None
        value, self.buf = self.buf[at : at + length], self.buf[at + length :]
        return kind, value

    def wait_close(self):
        """How the concentrator ends the flow: "fin" or "reset"."""
        try:
            while True:
                chunk = self.sock.recv(1 << 16)
                if not chunk:
                    return "fin"
        except ConnectionResetError:
            return "reset"

    def close(self):
        self.sock.close()


def pattern(size, seed):
    return bytes((seed * 7 + i) % 251 for i in range(size))


# --- scenarios -------------------------------------------------------------------------


def echo(args):
    """Datagrams of `sizes` echoed in order; the first rides with the request."""
    sizes = args["sizes"]
    first = datagram(pattern(sizes[0], 0))
    flow = Flow(args, first=first)
    if not flow.ok:
        return {"reply": flow.reply, "echoed": []}
    echoed = []
    for i, size in enumerate(sizes):
        if i > 0:
            flow.send(datagram(pattern(size, i)))
        got = flow.next_datagram()
        if got != pattern(size, i):
            break
        echoed.append(size)
    flow.close()
    return {"reply": flow.reply, "echoed": echoed}


def reply_only(args):
    flow = Flow(args)
    flow.close()
    return {"reply": flow.reply}


def replay(args):
    first = Flow(args)
    again = Flow(args, wire=first.wire)
    first.close()
    again.close()
    return {"first": first.reply, "again": again.reply}


def bad_tag(args):
    wire = bytearray(seal_udp(args["dest_ip"], args["dest_port"], args["client"], bytes.fromhex(args["key"]), int(time.time()), os.urandom(12)))
    # Header 4, Connect 20, UDP 4, Cookie TLV header 4, then format, id length, id,
    # timestamp 8 and nonce 12 before the tag.
    tag_start = 4 + 20 + 4 + 4 + 2 + len(args["client"]) + 8 + 12
    wire[tag_start + 5] ^= 1
    flow = Flow(args, wire=bytes(wire))
    flow.close()
    return {"reply": flow.reply}


def no_udp_tlv_without_connect(args):
    """A UDP TLV and no Connect TLV: built by hand, sealed the same way."""
    key = bytes.fromhex(args["key"])
    cid = args["client"].encode("ascii")
    value = struct.pack("!BB", 1, len(cid)) + cid + struct.pack("!Q", int(time.time())) + os.urandom(12)
    tag_at = len(value)
    value += bytes(16) + bytes(-(4 + len(value) + 16) % 4)
    cookie = struct.pack("!BBH", TLV_COOKIE, (4 + len(value)) // 4, 0) + value
    body = struct.pack("!BBH", TLV_UDP, 1, 0) + cookie
    message = bytearray(struct.pack("!BBH", 1, (4 + len(body)) // 4, MAGIC) + body)
    tag = hmac.new(key, bytes(message), hashlib.sha256).digest()[:16]
    at = 4 + 4 + 4 + tag_at
    message[at : at + 16] = tag
    flow = Flow(args, wire=bytes(message))
    flow.close()
    return {"reply": flow.reply}


def flood(args):
    """Client A opens `count` flows and holds them; then client B echoes one datagram."""
    held = [Flow(args) for _ in range(args["count"])]
    replies = [f.reply for f in held]
    # A's flows still work while the limit refuses more.
    held[0].send(datagram(b"still here"))
    a_works = held[0].next_datagram() == b"still here"
    other = Flow(args, client=args["other_client"], key=args["other_key"], first=datagram(b"other"))
    b_works = other.ok and other.next_datagram() == b"other"
    for f in held + [other]:
        f.close()
    return {"replies": replies, "a_works": a_works, "b_works": b_works}


def idle(args):
    """One echo, then silence: how does the concentrator end the flow?"""
    flow = Flow(args, first=datagram(b"ping"))
    got = flow.next_datagram() if flow.ok else None
    closed = flow.wait_close()
    return {"reply": flow.reply, "echoed": got == b"ping", "closed": closed}


def unknown(args):
    """Unknown capsule types and a foreign context id around datagrams: only the
    context-0 datagrams come back, in order."""
    flow = Flow(args)
    if not flow.ok:
        return {"reply": flow.reply}
    stream = (
        capsule(0x2D, b"\x09\x09\x09")
        + datagram(b"one")
        + capsule(0x1234, b"")
        + datagram(b"ctx2", context=2)
        + capsule(0x3FFFFFFF, bytes(300))
        + datagram(b"two")
    )
    # Byte by byte for the first half, to cross every boundary.
    half = len(stream) // 2
    for i in range(half):
        flow.send(stream[i : i + 1])
    flow.send(stream[half:])
    got = [flow.next_datagram(), flow.next_datagram()]
    flow.close()
    return {"reply": flow.reply, "got": [g.decode() if g is not None else None for g in got]}


def malformed(args):
    """An echo, then a capsule longer than 65,535 + 16 bytes: the flow is reset."""
    flow = Flow(args, first=datagram(b"before"))
    got = flow.next_datagram() if flow.ok else None
    flow.send(varint(DATAGRAM) + varint(65_552) + b"\x00")
    closed = flow.wait_close()
    return {"reply": flow.reply, "echoed": got == b"before", "closed": closed}


def hold(args):
    """Open `count` flows, send one datagram on each, wait for its echo, print, and hold
    them open until stdin closes (for memory measurements)."""
    flows = []
    for i in range(args["count"]):
        flow = Flow(args, first=datagram(b"x%d" % i))
        if not flow.ok or flow.next_datagram() != b"x%d" % i:
            print(json.dumps({"opened": i, "error": flow.reply}), flush=True)
            return None
        flows.append(flow)
    print(json.dumps({"opened": len(flows)}), flush=True)
    sys.stdin.read()
    for f in flows:
        f.close()
    return None


def bulk(args):
    """Send `count` datagrams of `size` bytes as fast as the socket takes them, and count
    the echoes that come back until `count` or the stream goes quiet for a second."""
    flow = Flow(args)
    if not flow.ok:
        return {"reply": flow.reply}
    payload = bytes(args["size"])
    chunk = datagram(payload) * 32
    sent = 0
    started = time.monotonic()
    while sent < args["count"]:
        flow.send(chunk)
        sent += 32
    flow.sock.settimeout(1)
    got = 0
    try:
        while got < sent:
            if flow.next_datagram() is None:
                break
            got += 1
    except socket.timeout:
        pass
    elapsed = time.monotonic() - started
    flow.close()
    return {"reply": flow.reply, "sent": sent, "echoed": got, "seconds": elapsed}


def stall(args):
    """Send `count` datagrams of `size` bytes and read nothing (a 64 KiB receive window),
    print how many went, then wait for a number on stdin and read that many datagrams."""
    flow = Flow(args, rcvbuf=65536)
    if not flow.ok:
        print(json.dumps({"reply": flow.reply}), flush=True)
        return None
    for i in range(args["count"]):
        flow.send(datagram(pattern(args["size"], i)))
    print(json.dumps({"reply": flow.reply, "sent": args["count"]}), flush=True)
    expect = int(sys.stdin.readline())
    received = 0
    while received < expect and flow.next_datagram() is not None:
        received += 1
    flow.close()
    return {"received": received}


def burst(args):
    """`count` datagrams in one write, then a FIN; how the concentrator ends the flow."""
    flow = Flow(args)
    if not flow.ok:
        return {"reply": flow.reply}
    flow.send(b"".join(datagram(b"%d" % i) for i in range(args["count"])))
    flow.sock.shutdown(socket.SHUT_WR)
    while flow.next_datagram() is not None:
        pass
    return {"reply": flow.reply, "sent": args["count"]}


def protected(args):
    """Two legs of one group (random id): `count` datagrams, each sent on both legs with
    its sequence number, then a marker; the destination echoes what it gets. Each leg
    reads up to the marker's echo: every echo once, on both legs, with the same
    sequence numbers, if the concentrator removed the duplicates."""
    group_id = struct.unpack("!Q", os.urandom(8))[0]
    legs = [Flow(args, group=(group_id, leg, 2)) for leg in range(2)]
    replies = [leg.reply for leg in legs]
    if not all(leg.ok for leg in legs):
        return {"replies": replies}
    count = args["count"]
    for seq in range(count + 1):
        payload = b"end" if seq == count else pattern(200, seq)
        for leg in legs:
            leg.send(sequenced(seq, payload))
    got = []
    for leg in legs:
        seen = []
        while True:
            item = leg.next_sequenced()
            if item is None or item[1] == b"end":
                break
            seen.append(item)
        got.append(seen)
    want = [(seq, pattern(200, seq)) for seq in range(count)]
    for leg in legs:
        leg.close()
    return {"replies": replies, "legs_match": got[0] == got[1] == want, "counts": [len(g) for g in got]}


SCENARIOS = {
    "protected": protected,
    "stall": stall,
    "burst": burst,
    "echo": echo,
    "reply": reply_only,
    "replay": replay,
    "bad_tag": bad_tag,
    "udp_without_connect": no_udp_tlv_without_connect,
    "flood": flood,
    "idle": idle,
    "unknown": unknown,
    "malformed": malformed,
    "hold": hold,
    "bulk": bulk,
}


def main():
    check_worked_examples()
    if len(sys.argv) < 2:
        print(json.dumps({"self_check": "ok"}))
        return
    args = json.loads(sys.argv[1])
    result = SCENARIOS[args["scenario"]](args)
    if result is not None:
        print(json.dumps(result), flush=True)


main()
