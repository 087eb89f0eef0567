#!/usr/bin/env python3
"""Classify each small upstream MPTCP connection in a router pcap (tcpdump -nn text on
stdin): when the server's data and its DATA_FIN first arrived (ms after the SYN), which of
the two was lost (A: the data packet, recovered by TCP's loss probe / RTO; B: the pure-ACK
DATA_FIN, recovered by MPTCP's DATA_FIN timer), the fate of its MP_JOIN (matched by
token = first 32 bits of SHA-256 of the server key), and whether the answer's first data
segment carried the DATA_FIN itself ('together', the relay's corked last write since
round 17) or not ('apart'). The last lines tally each server port's requests by kind.

A diagnosis aid for case 13's small requests (docs/PERFORMANCE.md, issue 11 round 16).
Capture while `MPBOND_BENCH_TESTS=requests MPBOND_BENCH_PROFILES=starlink mpbond-bench
--cases 13 --short` runs, in the bench's router namespace (`mpbt-<bench pid>-<n>-router`):

    ip netns exec mpbt-PID-1-router tcpdump -i any -s 120 -w router.pcap 'tcp and not port 1080'
    tcpdump -nn -r router.pcap 'tcp and (port 4850 or port 8388)' | python3 small_requests.py

Ports: 4850 the concentrator, 8388 the peer's ssserver. Run the requests test alone: a
download in the same capture would be counted as a late DATA_FIN."""
import sys, re, collections, hashlib
conns = collections.OrderedDict(); joins = {}; tok_of = {}
SRV = ('4850', '8388')
for line in sys.stdin:
    f = line.split()
    if len(f) < 8 or f[3] != 'IP': continue
    h, m, s = f[0].split(':'); ts = int(h)*3600 + int(m)*60 + float(s)
    src, dst = f[4], f[6].rstrip(':')
    sp, dp = src.rsplit('.', 1)[1], dst.rsplit('.', 1)[1]
    if dp in SRV: key, out = (src, dp), True
    elif sp in SRV: key, out = (dst, sp), False
    else: continue
    if out and 'join' in line and '[S]' in line:
        tk = re.search(r'token (0x[0-9a-f]+)', line)
        joins[key] = {'token': int(tk.group(1), 16), 'rejected': False}; continue
    if key in joins:
        if not out and '[R]' in line: joins[key]['rejected'] = True
        continue
    if out and '[S]' in line and 'capable' in line:
        conns[key] = {'syn': ts, 'data': None, 'fin': None, 'finfirst': False,
                      'together': False, 'first': None, 'ranges': set()}; continue
    c = conns.get(key)
    if c is None or out: continue
    if '[S.]' in line:
        mk = re.search(r'capable v1 \{(0x[0-9a-f]+)\}', line)
        if mk:
            k = int(mk.group(1), 16).to_bytes(8, 'big')
            tok_of[int.from_bytes(hashlib.sha256(k).digest()[:4], 'big')] = key
        continue
    ln = int(re.search(r'length (\d+)', line).group(1)) if 'length' in line else 0
    if ln > 0:
        # The answer is in when its last new range arrived (a retransmission of a range
        # already seen does not count): with the last byte sent alone, a first segment
        # lost and resent comes after the tail.
        sq = re.search(r'seq (\d+):(\d+)', line)
        rng = sq.groups() if sq else ('?', ts)
        if rng not in c['ranges']:
            c['ranges'].add(rng); c['data'] = ts
        if c['first'] is None:
            c['first'] = ts; c['together'] = 'dss fin' in line
    if 'dss fin' in line and c['fin'] is None:
        c['fin'] = ts; c['finfirst'] = c['data'] is None
jstate = {}
for j in joins.values():
    ck = tok_of.get(j['token'])
    if ck: jstate[ck] = 'rejected' if j['rejected'] else 'not-rejected'
tally = collections.defaultdict(collections.Counter)
for key, c in conns.items():
    if c['data'] is None or c['fin'] is None: continue
    d = (c['data'] - c['syn'])*1000; fn = (c['fin'] - c['syn'])*1000
    kind = 'ok'
    if c['finfirst'] and d - fn > 100: kind = 'A:data-lost'
    elif fn - d > 100: kind = 'B:datafin-lost'
    elif max(d, fn) > 250: kind = 'slow-other'
    seg = 'together' if c['together'] else 'apart'
    tally[key[1]][kind] += 1; tally[key[1]][seg] += 1
    print(f"{key[1]} {key[0]:>20} data {d:6.0f} ms datafin {fn:6.0f} ms {kind:15} "
          f"join {jstate.get(key, 'none'):12} {seg}")
for port, counts in tally.items():
    print(f"# {port}: " + ', '.join(f"{k} {v}" for k, v in sorted(counts.items())))
