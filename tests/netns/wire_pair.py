#!/usr/bin/env python3
"""Both ends of t_wire.sh's scenarios, and the comparison of their captures.

    wire_pair.py server ADDR PORT SCENARIO READY_FILE
    wire_pair.py client ADDR PORT SCENARIO
    wire_pair.py segments PCAP SERVER_PORT     (prints the normalized segments)

Scenarios (the client is always the kernel in ns B; the server runs on the
kernel or under xtcp):
  rr        10 requests of 20 bytes, each answered at once with 20 bytes,
            the client waiting 5 ms between them; then the client closes and
            the server closes on EOF
  srvclose  one request of 20 bytes; the server answers 100 bytes and
            closes at once (HTTP/1.0 style); the client reads to EOF, closes
  halfclose the client sends 20 bytes and shuts its side down; the server
            reads to EOF, answers 100 bytes and closes
  slowreply 3 requests, each answered 100 ms after it was read (longer
            than the delayed-ACK timeout: no interactive mode)
  pipe      3 request/reply rounds, then two requests written 2 ms apart
            while the server sleeps 20 ms; it answers both in one write
            (the client's Nagle holds the second request until the
            server's delayed ACK of the first); the client closes

A normalized segment is: direction (C: client to server, S: back), flags,
payload length, sequence number relative to the sender's ISN, and the
acknowledgement relative to the other end's ISN.  Window values, options and
timing are left out; how often the window field changes from one of the
server's replies (segments with data) to the next, up to the first FIN, is
printed as a last line of its own.  (A pure ACK sent before the program
read a request may differ: it announces xtcp's exact free space, less the
request, where Linux's window is clamped well below its buffer.)"""
import socket
import struct
import sys
import time


def recv_n(sock, n, eof_ok=False):
    """Exactly n bytes; b"" at EOF before the first byte when eof_ok, else
    an early EOF is an error (the run fails at once instead of hanging)."""
    b = b""
    while len(b) < n:
        x = sock.recv(n - len(b))
        if not x:
            if eof_ok and not b:
                return b""
            raise RuntimeError(f"EOF after {len(b)} of {n} bytes")
        b += x
    return b


def exchange(c, i):
    """One client round: a 20-byte request, its 20-byte reply."""
    c.sendall(b"request-%02d-abcdefghi" % i)
    recv_n(c, 20)


def drain(sock):
    while sock.recv(4096):
        pass


def server(addr, port, scenario, ready):
    l = socket.socket()
    l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind((addr, port))
    l.listen(4)
    open(ready, "w").close()
    s, _ = l.accept()
    if scenario == "rr":
        while b := recv_n(s, 20, eof_ok=True):
            s.sendall(b.upper())
    elif scenario == "halfclose":
        drain(s)
        s.sendall(b"R" * 100)
    elif scenario == "pipe":
        for _ in range(3):
            s.sendall(recv_n(s, 20).upper())
        time.sleep(0.02)
        s.sendall(recv_n(s, 40).upper())
        s.recv(1)
    elif scenario == "slowreply":
        for _ in range(3):
            b = recv_n(s, 20)
            time.sleep(0.1)
            s.sendall(b.upper())
        s.recv(1)
    else:
        recv_n(s, 20)
        s.sendall(b"R" * 100)
    s.close()
    l.close()


def client(addr, port, scenario):
    c = socket.create_connection((addr, port), timeout=10)
    if scenario == "rr":
        for i in range(10):
            exchange(c, i)
            time.sleep(0.005)
    elif scenario == "halfclose":
        c.sendall(b"GET / HTTP/1.0\r\n\r\n\0\0")
        c.shutdown(socket.SHUT_WR)
        drain(c)
    elif scenario == "pipe":
        for i in range(3):
            exchange(c, i)
            time.sleep(0.005)
        c.sendall(b"request-A--abcdefghi")
        time.sleep(0.002)
        c.sendall(b"request-B--abcdefghi")
        recv_n(c, 40)
    elif scenario == "slowreply":
        for i in range(3):
            exchange(c, i)
    else:
        c.sendall(b"GET / HTTP/1.0\r\n\r\n\0\0")
        drain(c)
    c.close()


def segments(pcap, sport):
    data = open(pcap, "rb").read()
    magic = struct.unpack("<I", data[:4])[0]
    e = "<" if magic in (0xa1b2c3d4, 0xa1b23c4d) else ">"
    off, out, isn, wins = 24, [], {}, []
    fin_seen = False
    while off + 16 <= len(data):
        _, _, caplen, _ = struct.unpack(e + "IIII", data[off:off + 16])
        p = data[off + 16:off + 16 + caplen]
        off += 16 + caplen
        if len(p) < 14 + 20 or struct.unpack("!H", p[12:14])[0] != 0x0800:
            continue
        ip = p[14:]
        ihl = (ip[0] & 15) * 4
        if ip[9] != 6:
            continue
        tot = struct.unpack("!H", ip[2:4])[0]
        tcp = ip[ihl:]
        sp, dp, seq, ack = struct.unpack("!HHII", tcp[:12])
        doff = (tcp[12] >> 4) * 4
        fl = tcp[13]
        win = struct.unpack("!H", tcp[14:16])[0]
        plen = tot - ihl - doff
        d = "S" if sp == sport else "C"
        if fl & 0x02:
            isn[d] = seq
        other = "C" if d == "S" else "S"
        flags = "".join(c for c, bit in (("S", 2), ("F", 1), ("R", 4), ("P", 8), ("A", 16)) if fl & bit)
        rs = (seq - isn.get(d, seq)) & 0xffffffff
        ra = (ack - isn[other]) & 0xffffffff if (fl & 0x10) and other in isn else "-"
        out.append(f"{d} {flags:<3} len {plen:<4} seq {rs:<5} ack {ra}")
        if fl & 0x01:
            fin_seen = True
        if d == "S" and plen and not fin_seen:
            wins.append(win)
    for line in out:
        print(line)
    changes = sum(1 for a, b in zip(wins, wins[1:]) if a != b)
    print(f"server window field changes between replies: {changes}")


if __name__ == "__main__":
    if sys.argv[1] == "server":
        server(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
    elif sys.argv[1] == "client":
        client(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        segments(sys.argv[2], int(sys.argv[3]))
