#!/usr/bin/env python3
"""Seed corpora for the xtcp fuzz targets.

    python3 tests/fuzz/mkcorpus.py [outdir]     (default: tests/fuzz/corpus)

fuzz_frame/: Ethernet frames towards 10.0.0.1 (02:00:00:00:00:01) from
10.0.0.2 (02:00:00:00:00:02): ARP, ICMP echo and errors, TCP segments with
and without options (odd lengths included), IP oddities.

fuzz_tcp_stateful/: programs in the byte code that fuzz_tcp_stateful.c
decodes (see the comment at its top); the encoders below mirror its
op_inject/op_time/op_app/op_icmp readers byte for byte.

Output is deterministic: the same script gives the same files.
"""
import os
import struct
import sys

US_MAC = bytes([2, 0, 0, 0, 0, 1])
PEER_MAC = bytes([2, 0, 0, 0, 0, 2])
BCAST = b"\xff" * 6
US = 0x0A000001
PEER = 0x0A000002

FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 1, 2, 4, 8, 16, 32, 64, 128


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def eth(payload, ethertype=0x0800, dst=US_MAC, src=PEER_MAC):
    return dst + src + struct.pack("!H", ethertype) + payload


def ipv4(proto, payload, src=PEER, dst=US, ttl=64, frag=0x4000, opts=b"", ident=1, bad_csum=False):
    ihl = 5 + len(opts) // 4
    hdr = struct.pack("!BBHHHBBHII", 0x40 | ihl, 0, 4 * ihl + len(payload), ident, frag, ttl, proto, 0, src, dst) + opts
    c = csum(hdr)
    if bad_csum:
        c ^= 0x0100
    hdr = hdr[:10] + struct.pack("!H", c) + hdr[12:]
    return hdr + payload


def tcp(sport, dport, seq, ack, flags, win=65535, opts=b"", data=b"", src=PEER, dst=US, bad_csum=False, doff=None):
    while len(opts) % 4:
        opts += b"\0"
    off = doff if doff is not None else (20 + len(opts)) // 4
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, off << 4, flags, win, 0, 0) + opts
    seg = hdr + data
    pseudo = struct.pack("!IIBBH", src, dst, 0, 6, len(seg))
    c = csum(pseudo + seg)
    if bad_csum:
        c ^= 1
    return seg[:16] + struct.pack("!H", c) + seg[18:]


def o_mss(v):
    return struct.pack("!BBH", 2, 4, v)


def o_ws(v):
    return b"\x01" + struct.pack("!BBB", 3, 3, v)


def o_sackp():
    return b"\x01\x01\x04\x02"


def o_ts(val, ecr):
    return b"\x01\x01" + struct.pack("!BBII", 8, 10, val, ecr)


def o_sack(blocks):
    return b"\x01\x01" + struct.pack("!BB", 5, 2 + 8 * len(blocks)) + b"".join(struct.pack("!II", a, b) for a, b in blocks)


def tcp_frame(*a, **k):
    ipk = {x: k.pop(x) for x in list(k) if x in ("ttl", "frag", "ip_opts", "ip_bad")}
    seg = tcp(*a, **k)
    return eth(ipv4(6, seg, ttl=ipk.get("ttl", 64), frag=ipk.get("frag", 0x4000), opts=ipk.get("ip_opts", b""),
                    bad_csum=ipk.get("ip_bad", False)))


def icmp(typ, code, rest, body):
    m = struct.pack("!BBH", typ, code, 0) + rest + body
    c = csum(m)
    return m[:2] + struct.pack("!H", c) + m[4:]


def arp(op, sha, spa, tha, tpa):
    return struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + sha + struct.pack("!I", spa) + tha + struct.pack("!I", tpa)


def frame_corpus():
    c = {}
    full = o_mss(1460) + o_sackp() + o_ts(1000, 0) + o_ws(7)
    c["arp_request"] = eth(arp(1, PEER_MAC, PEER, b"\0" * 6, US), 0x0806, dst=BCAST)
    c["arp_reply"] = eth(arp(2, PEER_MAC, PEER, US_MAC, US), 0x0806)
    c["arp_gratuitous"] = eth(arp(1, PEER_MAC, PEER, b"\0" * 6, PEER), 0x0806, dst=BCAST)
    c["arp_padded"] = eth(arp(1, PEER_MAC, PEER, b"\0" * 6, US) + b"\0" * 18, 0x0806, dst=BCAST)
    c["arp_bad_hlen"] = eth(arp(1, PEER_MAC, PEER, b"\0" * 6, US)[:4] + b"\x05\x04" + arp(1, PEER_MAC, PEER, b"\0" * 6, US)[6:], 0x0806, dst=BCAST)
    c["icmp_echo"] = eth(ipv4(1, icmp(8, 0, struct.pack("!HH", 0x1234, 1), b"abcdefghijklmnopqrstuvwxyz012345")))
    c["icmp_echo_odd"] = eth(ipv4(1, icmp(8, 0, struct.pack("!HH", 7, 9), b"xyz")))
    c["icmp_echo_big"] = eth(ipv4(1, icmp(8, 0, struct.pack("!HH", 7, 10), bytes(range(256)) * 5 + bytes(192))))
    c["icmp_echo_reply"] = eth(ipv4(1, icmp(0, 0, struct.pack("!HH", 7, 9), b"pong")))
    quoted_tcp = ipv4(6, tcp(80, 40000, 0x1000, 0x2000, ACK, src=US, dst=PEER), src=US, dst=PEER)
    c["icmp_frag_needed"] = eth(ipv4(1, icmp(3, 4, struct.pack("!HH", 0, 1280), quoted_tcp[:28])))
    c["icmp_frag_needed_full"] = eth(ipv4(1, icmp(3, 4, struct.pack("!HH", 0, 576), quoted_tcp[:40])))
    c["icmp_frag_needed_tiny_mtu"] = eth(ipv4(1, icmp(3, 4, struct.pack("!HH", 0, 68), quoted_tcp[:28])))
    c["icmp_port_unreach"] = eth(ipv4(1, icmp(3, 3, b"\0\0\0\0", quoted_tcp[:28])))
    c["icmp_host_unreach"] = eth(ipv4(1, icmp(3, 1, b"\0\0\0\0", quoted_tcp[:28]), src=0x0A0000FE))
    c["icmp_time_exceeded"] = eth(ipv4(1, icmp(11, 0, b"\0\0\0\0", quoted_tcp[:28]), src=0x0A0000FE))
    c["icmp_quote_short"] = eth(ipv4(1, icmp(3, 4, struct.pack("!HH", 0, 1000), quoted_tcp[:24])))
    c["tcp_syn"] = tcp_frame(40000, 80, 0x1000, 0, SYN, opts=full)
    c["tcp_syn_noopts"] = tcp_frame(40001, 80, 0x2000, 0, SYN)
    c["tcp_syn_mss_only"] = tcp_frame(40002, 80, 0x3000, 0, SYN, opts=o_mss(536))
    c["tcp_syn_ws14"] = tcp_frame(40003, 80, 0x4000, 0, SYN, opts=o_ws(14) + o_mss(9000))
    c["tcp_syn_ws_big"] = tcp_frame(40003, 80, 0x4000, 0, SYN, opts=o_ws(200))
    c["tcp_syn_opt_len1"] = tcp_frame(40004, 80, 0x5000, 0, SYN, opts=b"\x02\x01\x05\xb4")
    c["tcp_syn_opt_truncated"] = tcp_frame(40005, 80, 0x5000, 0, SYN, opts=b"\x01\x01\x01\x08\x0a\x00\x00\x00")
    c["tcp_syn_opt_len0"] = tcp_frame(40006, 80, 0x5000, 0, SYN, opts=b"\x08\x00\x00\x00")
    c["tcp_syn_opt_odd"] = tcp_frame(40007, 80, 0x5000, 0, SYN, opts=b"\x02\x04\x05\xb4\x03\x03\x07\x04\x02\x1e\x05")
    c["tcp_syn_opt_unknown"] = tcp_frame(40008, 80, 0x5000, 0, SYN, opts=b"\xfe\x06\x12\x34\x56\x78\x22\x03\x00\x01")
    c["tcp_syn_sack_in_syn"] = tcp_frame(40009, 80, 0x5000, 0, SYN, opts=o_sack([(1, 2)]))
    c["tcp_syn_data"] = tcp_frame(40010, 80, 0x6000, 0, SYN, opts=o_mss(1460), data=b"GET / HTTP/1.0\r\n\r\n")
    c["tcp_syn_fin"] = tcp_frame(40011, 80, 0x6000, 0, SYN | FIN)
    c["tcp_syn_rst"] = tcp_frame(40012, 80, 0x6000, 0, SYN | RST)
    c["tcp_synack"] = tcp_frame(80, 32768, 0x9000, 0x12345678, SYN | ACK, opts=full)
    c["tcp_ack_cookie"] = tcp_frame(40000, 80, 0x1001, 0x55667788, ACK, opts=o_ts(1001, 0))
    c["tcp_data"] = tcp_frame(40000, 80, 0x1001, 0x55667788, ACK | PSH, opts=o_ts(1001, 0), data=b"hello, world\n")
    c["tcp_data_sack"] = tcp_frame(40000, 80, 0x1001, 0x55667788, ACK, opts=o_sack([(0x55667788, 0x55667800), (0x55668000, 0x55669000)]), data=b"x" * 100)
    c["tcp_fin"] = tcp_frame(40000, 80, 0x1001, 0x55667788, FIN | ACK)
    c["tcp_rst"] = tcp_frame(40000, 80, 0x1001, 0, RST)
    c["tcp_rst_ack"] = tcp_frame(40000, 80, 0x1001, 0x55667788, RST | ACK)
    c["tcp_no_flags"] = tcp_frame(40000, 80, 0x1001, 0, 0)
    c["tcp_all_flags"] = tcp_frame(40000, 80, 0x1001, 1, 0xFF)
    c["tcp_closed_port"] = tcp_frame(40000, 81, 0x1001, 0, SYN)
    c["tcp_ack_closed_port"] = tcp_frame(40000, 81, 0x1001, 5, ACK, data=b"zz")
    c["tcp_bad_csum"] = tcp_frame(40000, 80, 0x1000, 0, SYN, opts=full, bad_csum=True)
    c["tcp_doff_short"] = tcp_frame(40000, 80, 0x1000, 0, SYN, doff=4)
    c["tcp_doff_long"] = tcp_frame(40000, 80, 0x1000, 0, SYN, doff=15)
    c["ip_options"] = tcp_frame(40000, 80, 0x1000, 0, SYN, ip_opts=b"\x01\x01\x01\x00")
    c["ip_fragment"] = tcp_frame(40000, 80, 0x1000, 0, SYN, frag=0x2000)
    c["ip_fragment_off"] = tcp_frame(40000, 80, 0x1000, 0, SYN, frag=0x0010)
    c["ip_bad_csum"] = tcp_frame(40000, 80, 0x1000, 0, SYN, ip_bad=True)
    c["ip_ttl0"] = tcp_frame(40000, 80, 0x1000, 0, SYN, ttl=0)
    c["ip_src_broadcast"] = eth(ipv4(6, tcp(1, 80, 0, 0, SYN, src=0xFFFFFFFF), src=0xFFFFFFFF))
    c["ip_src_self"] = eth(ipv4(6, tcp(1, 80, 0, 0, SYN, src=US), src=US))
    c["ip_not_for_us"] = eth(ipv4(6, tcp(1, 80, 0, 0, SYN, dst=0x0A000009), dst=0x0A000009))
    c["ip_udp"] = eth(ipv4(17, b"\x00\x35\x00\x35\x00\x08\x00\x00"))
    c["ip_len_short"] = eth(ipv4(6, tcp(1, 80, 0, 0, SYN))[:30])
    c["eth_padded_ack"] = tcp_frame(40000, 80, 0x1001, 0x55667788, ACK)[:54] + b"\0" * 6
    c["eth_vlan"] = eth(b"\x00\x05\x08\x00" + ipv4(1, icmp(8, 0, b"\0\x01\0\x01", b"v")), 0x8100)
    c["eth_short"] = US_MAC + PEER_MAC
    c["eth_multicast"] = eth(ipv4(1, icmp(8, 0, b"\0\x01\0\x01", b"m")), dst=bytes([1, 0, 0x5E, 0, 0, 1]))
    return c


# ---- fuzz_tcp_stateful programs ----

FLAG_IDX = {"A": 0, "PA": 1, "FA": 3, "R": 4, "RA": 5, "S": 6, "SA": 7, "FPA": 8, "none": 11, "SF": 13, "UA": 14, "EA": 15}
FLAG_VAL = {"A": ACK, "PA": PSH | ACK, "FA": FIN | ACK, "R": RST, "RA": RST | ACK, "S": SYN, "SA": SYN | ACK,
            "FPA": FIN | PSH | ACK, "none": 0, "SF": SYN | FIN, "UA": URG | ACK, "EA": ECE | CWR | ACK}
SIZES = {536: 0, 1448: 1, 1460: 2, 1: 3}
OPT_NAMES = ["REUSEADDR", "REUSEPORT", "KEEPALIVE", "RCVBUF", "SNDBUF", "RCVLOWAT", "LINGER", "ERROR", "NODELAY",
             "CORK", "KEEPIDLE", "KEEPINTVL", "KEEPCNT", "MAXSEG", "QUICKACK", "USER_TIMEOUT", "DEFER_ACCEPT"]
C0, C1, C2, C3, C4 = 0, 1, 2, 3, 4


def b8(v):
    return bytes([v & 0xFF])


def b16(v):
    return struct.pack("!H", v & 0xFFFF)


def b32(v):
    return struct.pack("!I", v & 0xFFFFFFFF)


def inject(conn, flags="A", seq="nxt", ack="emax", win=None, plen=0, opts="normal", so=0, sack=None,
           raw_opts=None, old_ts=None, bad=False, doff=None, rawflags=None):
    """One op_inject. seq: 'nxt' | 'eack' | ('d8', v) | ('d16', v) | ('m16', v) | ('raw', v);
    ack: 'emax' | ('emax-', v) | 'last' | ('emax+', v) | ('iss+', v) | ('raw', v);
    win: None (65535) | ('8', v) | ('16', v); opts: normal | sack | none | raw."""
    out = b8(0) + b8(conn)
    if rawflags is not None:
        out += b8(12) + b8(rawflags)
        fval = rawflags
    else:
        out += b8(FLAG_IDX[flags])
        fval = FLAG_VAL[flags]
    sm, sx = 0, b""
    if seq == "eack":
        sm = 3
    elif isinstance(seq, tuple):
        kind, v = seq
        sm, sx = {"d8": (4, b8(v)), "d16": (5, b16(v)), "m16": (6, b16(v)), "raw": (7, b32(v))}[kind]
    am, ax = 0, b""
    if ack == "last":
        am = 4
    elif isinstance(ack, tuple):
        kind, v = ack
        am, ax = {"emax-": (3, b8(v)), "emax+": (5, b8(v)), "iss+": (6, b16(v)), "raw": (7, b32(v))}[kind]
    out += b8(sm | am << 3) + sx + ax
    if win is None:
        out += b8(0)
    elif win[0] == "8":
        out += b8(0x80) + b8(win[1])
    else:
        out += b8(0xC0) + b16(win[1])
    if plen == 0:
        out += b8(0)
    elif plen in SIZES:
        out += b8(2 | SIZES[plen] << 2)
    elif plen < 256:
        out += b8(1) + b8(plen)
    else:
        out += b8(3) + b16(plen)
    mode = {"normal": 0, "sack": 1, "none": 2, "raw": 3}[opts]
    ob = mode << 2 | (3 if old_ts is not None else 0) | (0x80 if opts == "sack" else 0)
    out += b8(ob)
    if old_ts is not None:
        out += b32(old_ts)
    if opts == "normal" and fval & SYN:
        out += b8(so)
    elif opts == "sack":
        blocks = sack or [(1448, 1448)]
        out += b8(len(blocks) - 1)  # nb = 1 + b % 3 (timestamps on)
        for off, ln in blocks:
            out += b16(off) + b16(ln - 1)
    elif opts == "raw":
        out += b8(len(raw_opts)) + raw_opts
    misc = 0 if bad else 1
    if doff is not None:
        misc |= 0x30
    out += b8(misc)
    if doff is not None:
        out += b8(doff)
    return out


UNITS = {"us": 0, "100us": 1, "ms": 2, "10ms": 3, "100ms": 4, "s": 5, "min": 6, "h": 7}


def advance(count, unit="ms", step=True):
    return b8(4) + b8(UNITS[unit] | (8 if step else 0)) + b8(count - 1)


def app(conn, act, *extra):
    return b8(5) + b8(conn) + b8(act) + b"".join(extra)


def send(conn, n, more=False):
    return app(conn, 0 | (0x20 if more else 0), b16(n))


def send_small(conn, n):
    return app(conn, 2, b8(n - 1))


def recv(conn, n, peek=False):
    return app(conn, 3 | (0x20 if peek else 0), b16(n - 1))


def shutdown(conn, how):
    return app(conn, 5, b8(how))


def close(conn):
    return app(conn, 6)


def abort(conn):
    return app(conn, 7)


def setopt(conn, name, val, listener=False):
    opt = OPT_NAMES.index(name)
    act = 8 | (0x20 if listener else 0)
    if 0 <= val < 64:
        return app(conn, act, b8(opt), b8(val << 2))
    return app(conn, act, b8(opt), b8(3), b32(val))


def info(conn):
    return app(conn, 11)


def accept():
    return app(0, 12)


def reconnect(conn):
    return app(conn, 14)


def drain(conn):
    return app(conn, 16)


def icmp_err(conn, kind=0, mtu=576, qmode=0, qlen_idx=0, router=False):
    qm = qmode | qlen_idx << 2 | (0x10 if router else 0)
    return b8(7) + b8(conn) + b8(kind) + b16(mtu) + b8(qm) + b8(1)


def programs():
    p = {}
    hs = inject(C3, "S") + inject(C3, "A") + accept()
    p["empty"] = b"\x00"
    p["variant_no_ts"] = b"\x09" + inject(C0, "PA", plen=100) + drain(C0)
    p["variant_no_opts"] = b"\x3f" + inject(C0, "PA", plen=1460) + send(C0, 3000) + inject(C0, "A") + drain(C0)
    p["variant_cookies"] = b"\x40" + inject(C0, "PA", plen=300) + drain(C0) + send(C0, 2000) + inject(C0, "A") + inject(C3, "S") + inject(C3, "A") + accept() + inject(C3, "FA") + drain(C3)
    p["variant_cookie_shifted_ack"] = b"\x40" + inject(C3, "S", plen=20) + inject(C3, "A", ack=("emax+", 20)) + accept() + send(C3, 100)
    p["variant_mtu1280"] = b"\x80" + send(C1, 5000) + advance(1) + inject(C1, "A") + advance(300)
    p["variant_mtu576"] = b"\xc0" + send(C1, 5000) + advance(1) + inject(C1, "A") + advance(300)
    p["c0_data_in_order"] = b"\x00" + inject(C0, "PA", plen=1448) + inject(C0, "PA", plen=1448) + inject(C0, "PA", plen=100) + drain(C0) + advance(50)
    p["c0_echo"] = b"\x00" + inject(C0, "PA", plen=200) + recv(C0, 200) + send(C0, 200) + inject(C0, "A") + advance(1)
    p["c0_peer_fin"] = b"\x00" + inject(C0, "FPA", plen=10) + drain(C0) + recv(C0, 10) + close(C0) + inject(C0, "A") + advance(61, "s")
    p["c0_active_close"] = b"\x00" + shutdown(C0, 1) + inject(C0, "A") + inject(C0, "FA") + advance(61, "s") + info(C0)
    p["c0_simultaneous_close"] = b"\x00" + close(C0) + inject(C0, "FA", ack=("emax-", 1)) + inject(C0, "A") + advance(2, "min")
    p["c0_ooo"] = b"\x00" + inject(C0, "PA", seq=("d16", 1448), plen=1448) + inject(C0, "PA", seq=("d16", 4000), plen=500) + inject(C0, "PA", plen=1448) + drain(C0)
    p["c0_dup_and_overlap"] = b"\x00" + inject(C0, "PA", plen=1000) + inject(C0, "PA", seq=("m16", 500), plen=1000) + inject(C0, "PA", seq=("m16", 1500), plen=1500) + drain(C0)
    p["c0_old_segment"] = b"\x00" + inject(C0, "PA", plen=100) + inject(C0, "PA", seq=("m16", 100), plen=100) + inject(C0, "PA", seq=("m16", 40000), plen=10)
    p["c0_rst"] = b"\x00" + inject(C0, "R") + recv(C0, 10) + info(C0)
    p["c0_rst_in_window"] = b"\x00" + inject(C0, "R", seq=("d8", 5)) + advance(1)
    p["c0_syn_in_estab"] = b"\x00" + inject(C0, "S") + advance(1)
    p["c0_paws"] = b"\x00" + inject(C0, "PA", plen=10, old_ts=0x40000000) + drain(C0)
    p["c0_zero_window"] = b"\x00" + inject(C0, "A", win=("8", 0)) + send(C0, 4000) + advance(10, "s") + inject(C0, "A", win=("16", 65535)) + advance(100)
    p["c0_rcvbuf_full"] = b"\x00" + b"".join(inject(C0, "PA", plen=1448) for _ in range(14)) + advance(1) + drain(C0)
    p["c0_close_unread"] = b"\x00" + inject(C0, "PA", plen=100) + close(C0) + advance(1)
    p["c0_linger0"] = b"\x00" + setopt(C0, "LINGER", 0) + close(C0)
    p["c0_keepalive"] = b"\x00" + setopt(C0, "KEEPALIVE", 1) + setopt(C0, "KEEPIDLE", 10) + setopt(C0, "KEEPINTVL", 1) + advance(30, "s") + inject(C0, "A", seq=("m16", 1)) + advance(3, "h")
    p["c0_cork"] = b"\x00" + setopt(C0, "CORK", 1) + send_small(C0, 5) + send_small(C0, 7) + advance(250) + setopt(C0, "CORK", 0)
    p["c0_nagle"] = b"\x00" + send_small(C0, 3) + send_small(C0, 3) + advance(1) + inject(C0, "A") + advance(1)
    p["c0_msg_more"] = b"\x00" + send(C0, 100, more=True) + advance(300)
    p["c0_shut_rd"] = b"\x00" + shutdown(C0, 0) + inject(C0, "PA", plen=100) + recv(C0, 100)
    p["c1_data_both"] = b"\x00" + send(C1, 3000) + inject(C1, "PA", plen=1448, ack=("emax-", 200)) + inject(C1, "A") + drain(C1)
    p["c1_fast_retransmit"] = b"\x00" + send(C1, 14000) + advance(1) + inject(C1, "A", ack=("iss+", 1449)) + inject(C1, "A", ack="last", opts="sack", sack=[(1448, 1448)]) + inject(C1, "A", ack="last", opts="sack", sack=[(1448, 2896)]) + inject(C1, "A", ack="last", opts="sack", sack=[(1448, 4344)]) + advance(5) + inject(C1, "A")
    p["c1_rto_backoff"] = b"\x00" + send(C1, 3000) + advance(120, "s") + inject(C1, "A")
    p["c1_retries_exhausted"] = b"\x00" + send(C1, 100) + advance(200, "min")
    p["c1_ack_unsent"] = b"\x00" + send(C1, 100) + inject(C1, "A", ack=("emax+", 100))
    p["c1_old_ack"] = b"\x00" + send(C1, 100) + inject(C1, "A", ack=("raw", 5))
    p["c1_frag_needed"] = b"\x00" + send(C1, 6000) + icmp_err(C1, kind=0, mtu=576) + advance(300) + inject(C1, "A")
    p["c1_frag_needed_router"] = b"\x00" + send(C1, 6000) + icmp_err(C1, kind=1, mtu=1000, router=True, qlen_idx=1)
    p["c1_unreach"] = b"\x00" + send(C1, 100) + icmp_err(C1, kind=2) + icmp_err(C1, kind=3) + advance(5, "s")
    p["c1_window_update"] = b"\x00" + inject(C1, "A", win=("8", 1)) + send(C1, 5000) + advance(1, "s") + inject(C1, "A", win=("16", 40000))
    p["c1_peer_fin_then_send"] = b"\x00" + inject(C1, "FA") + send(C1, 500) + inject(C1, "A") + close(C1) + inject(C1, "A") + advance(1)
    p["c1_urg"] = b"\x00" + inject(C1, "UA", plen=10) + drain(C1)
    p["c1_reconnect"] = b"\x00" + abort(C1) + reconnect(C1) + inject(C1, "SA") + send(C1, 100)
    p["c2_synack"] = b"\x00" + inject(C2, "SA", ack=("iss+", 1)) + send(C2, 100) + inject(C2, "PA", plen=50) + drain(C2)
    p["c2_synack_bad_ack"] = b"\x00" + inject(C2, "SA", ack=("iss+", 7))
    p["c2_rst"] = b"\x00" + inject(C2, "RA", ack=("iss+", 1)) + info(C2)
    p["c2_simultaneous_open"] = b"\x00" + inject(C2, "S") + inject(C2, "A", ack=("iss+", 1)) + send(C2, 10)
    p["c2_syn_timeout"] = b"\x00" + advance(200, "s")
    p["c2_synack_data"] = b"\x00" + inject(C2, "SA", ack=("iss+", 1), plen=20) + drain(C2)
    p["c2_icmp_unreach"] = b"\x00" + icmp_err(C2, kind=3, qmode=1) + advance(2, "s")
    p["c3_handshake_data"] = b"\x00" + hs + inject(C3, "PA", plen=300) + drain(C3) + send(C3, 1000) + inject(C3, "A")
    p["c3_synack_retrans"] = b"\x00" + inject(C3, "S") + advance(70, "s")
    p["c3_syn_data"] = b"\x00" + inject(C3, "S", plen=30) + inject(C3, "A") + accept() + drain(C3)
    p["c3_rst_in_synrecv"] = b"\x00" + inject(C3, "S") + inject(C3, "R", seq=("d8", 1))
    p["c3_ack_no_syn"] = b"\x00" + inject(C3, "A", ack=("raw", 0x12345678))
    p["c3_syn_ts_off"] = b"\x00" + inject(C3, "S", so=0x08) + inject(C3, "A", opts="none") + accept()
    p["c3_listener_closed"] = b"\x00" + app(0, 15) + inject(C3, "S") + app(0, 15, b8(1)) + inject(C4, "S")
    p["c3_backlog_full"] = b"\x00" + b"".join(inject(c, "S") + inject(c, "A") for c in (3, 4, 5, 6))
    p["c0_time_wait_reuse"] = b"\x00" + close(C0) + inject(C0, "FA") + advance(1) + inject(C0, "S", seq=("d16", 100000)) + inject(C0, "A") + accept()
    p["raw_opts"] = b"\x00" + inject(C0, "PA", plen=10, opts="raw", raw_opts=b"\x08\x0a\x00\x00\x00\x01\x00\x00\x00\x00\x05\x03\x00")
    p["bad_csum"] = b"\x00" + inject(C0, "PA", plen=10, bad=True) + inject(C0, "PA", plen=10, doff=3)
    p["setopts"] = b"\x00" + setopt(C0, "RCVBUF", 1) + setopt(C0, "SNDBUF", 1) + setopt(C0, "MAXSEG", 50) + setopt(C0, "USER_TIMEOUT", 500) + send(C0, 3000) + advance(2, "s") + setopt(C0, "DEFER_ACCEPT", 5, listener=True)
    return p


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
    for name, items in (("fuzz_frame", frame_corpus()), ("fuzz_tcp_stateful", programs())):
        d = os.path.join(outdir, name)
        os.makedirs(d, exist_ok=True)
        for k, v in sorted(items.items()):
            with open(os.path.join(d, k), "wb") as f:
                f.write(v)
        print("%s: %d files in %s" % (name, len(items), d))


if __name__ == "__main__":
    main()
