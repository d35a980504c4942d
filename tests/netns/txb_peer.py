#!/usr/bin/env python3
"""The kernel peer of t_txbatch.sh (ns B).

    txb_peer.py rounds ADDR PORT NCONN NROUNDS READYFILE
        accepts NCONN connections; per round reads one 16-byte record from
        each, checks it, and answers b"k" on each.
    txb_peer.py closes ADDR PORT NCONN READYFILE
        accepts NCONN connections; reads one record from each (any order of
        connections), then its end (EOF).
    txb_peer.py hold ADDR PORT READYFILE
        accepts one connection, reads one record and answers the
        CLOCK_MONOTONIC time at which it arrived.
"""
import socket
import struct
import sys
import time


def expect(conn, c, r):
    want = struct.pack("<II", c, r) + bytes((c * 7 + r * 13 + i) & 0xff for i in range(8, 16))
    got = b""
    while len(got) < 16:
        b = conn.recv(16 - len(got))
        if not b:
            sys.exit(f"txb_peer: conn {c} round {r}: EOF after {len(got)} bytes")
        got += b
    if got != want:
        sys.exit(f"txb_peer: conn {c} round {r}: record {got.hex()} != {want.hex()}")


def main():
    mode, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((addr, port))
    ls.listen(64)
    ls.settimeout(30)
    open(sys.argv[-1], "w").close()
    if mode == "rounds":
        nconn, nrounds = int(sys.argv[4]), int(sys.argv[5])
        conns = []
        for _ in range(nconn):
            c, _ = ls.accept()
            c.settimeout(30)
            conns.append(c)
        # the client dials in order; match by the first record instead
        order = {}
        for c in conns:
            b = c.recv(16, socket.MSG_PEEK | socket.MSG_WAITALL)
            order[struct.unpack("<I", b[:4])[0]] = c
        if sorted(order) != list(range(nconn)):
            sys.exit(f"txb_peer: connections {sorted(order)}")
        for r in range(nrounds):
            for i in range(nconn):
                expect(order[i], i, r)
            for i in range(nconn):
                order[i].sendall(b"k")
        print(f"peer: {nconn} x {nrounds} records checked")
    elif mode == "closes":
        nconn = int(sys.argv[4])
        conns = []
        for _ in range(nconn):
            c, _ = ls.accept()
            c.settimeout(30)
            conns.append(c)
        seen = set()
        for c in conns:
            b = c.recv(16, socket.MSG_PEEK | socket.MSG_WAITALL)
            i = struct.unpack("<I", b[:4])[0]
            expect(c, i, 0)
            if c.recv(1) != b"":
                sys.exit(f"txb_peer: conn {i}: data after the record, no EOF")
            seen.add(i)
        if sorted(seen) != list(range(nconn)):
            sys.exit(f"txb_peer: connections {sorted(seen)}")
        print(f"peer: {nconn} records and ends checked")
    else:
        c, _ = ls.accept()
        c.settimeout(30)
        b = c.recv(16, socket.MSG_WAITALL)
        t = time.clock_gettime(time.CLOCK_MONOTONIC)
        if len(b) != 16:
            sys.exit("txb_peer: short record")
        c.sendall(f"{t:.6f}".encode())
        c.close()
        print("peer: hold record received")


main()
