#!/usr/bin/env python3
"""memcached text-protocol checks for t_memcached.sh, over plain sockets.

usage: app_memc.py HOST PORT

  1. one connection: set keys of 0 B .. 1,000,000 B (random binary, CR LF
     inside, various flags), get each back: value and flags byte-identical
  2. one multi-get of all of them: every value identical, in order, END
  3. a 2 MiB set: SERVER_ERROR (above the 1 MiB item limit), and the same
     connection still answers (version)
  4. 6 threads, a connection each: 300 set/get pairs of distinct keys with
     random sizes (1 B .. 200 KiB), each get identical; then 500 `incr` each
     on one counter: the final value is 3000 and every reply was a number
     one above some earlier reply (no lost or duplicated increment)
  5. stats: curr_items counts exactly the keys stored here
Prints one line per check; exits 1 at the first failure.
"""
import os
import random
import socket
import sys
import threading

HOST, PORT = sys.argv[1], int(sys.argv[2])
TIMEOUT = 30


class Conn:
    def __init__(self):
        self.s = socket.create_connection((HOST, PORT), timeout=TIMEOUT)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def send(self, data):
        self.s.sendall(data)

    def fill(self):
        d = self.s.recv(1 << 20)
        if not d:
            raise RuntimeError("connection closed by the server")
        self.buf += d

    def line(self):
        while b"\r\n" not in self.buf:
            self.fill()
        ln, self.buf = self.buf.split(b"\r\n", 1)
        return ln

    def exact(self, n):
        while len(self.buf) < n:
            self.fill()
        d, self.buf = self.buf[:n], self.buf[n:]
        return d

    def set(self, key, val, flags=0):
        self.send(b"set %s %d 0 %d\r\n%s\r\n" % (key, flags, len(val), val))
        return self.line()

    def get_many(self, keys):
        self.send(b"get " + b" ".join(keys) + b"\r\n")
        out = {}
        while True:
            ln = self.line()
            if ln == b"END":
                return out
            p = ln.split()
            if len(p) != 4 or p[0] != b"VALUE":
                raise RuntimeError("bad get reply line %r" % ln[:80])
            val = self.exact(int(p[3]))
            if self.exact(2) != b"\r\n":
                raise RuntimeError("value of %r not followed by CR LF" % p[1])
            out[p[1]] = (int(p[2]), val)

    def cmd(self, c):
        self.send(c + b"\r\n")
        return self.line()


def fail(msg):
    print("FAIL: " + msg, flush=True)
    sys.exit(1)


def rbytes(rnd, n):
    b = bytearray(rnd.getrandbits(8) for _ in range(min(n, 4096)))
    # larger values: repeat random blocks with a varying byte so no two blocks match
    out = bytearray()
    while len(out) < n:
        out += b
        b[0] = (b[0] + 1) & 0xFF
    v = bytes(out[:n])
    return v.replace(b"\x00", b"\r\n")[:n] if n > 16 else v


def main():
    rnd = random.Random(11)
    sizes = [0, 1, 2, 3, 100, 1023, 1024, 1025, 1447, 1448, 1460, 4095, 4096, 65535,
             65536, 100000, 262144, 500000, 777777, 1000000]
    stored = {}

    # 1
    c = Conn()
    for i, n in enumerate(sizes):
        key = b"xt:v:%d" % n
        val = rbytes(rnd, n)
        flags = (i * 7919) & 0xFFFF
        r = c.set(key, val, flags)
        if r != b"STORED":
            fail("set of %d bytes answered %r" % (n, r))
        got = c.get_many([key])
        if got.get(key) != (flags, val):
            g = got.get(key)
            fail("get of the %d-byte value: %s" % (n, "missing" if g is None else
                 "flags %d, %d bytes, differs" % (g[0], len(g[1]))))
        stored[key] = (flags, val)
    print("ok: %d values of 0 .. 1000000 bytes set and read back identical (flags too)" % len(sizes),
          flush=True)

    # 2
    got = c.get_many(list(stored))
    if got != stored:
        bad = [k for k in stored if got.get(k) != stored[k]]
        fail("multi-get: %d of %d values differ or are missing: %r" % (len(bad), len(stored), bad[:3]))
    print("ok: one multi-get of %d keys (%d bytes) identical" %
          (len(stored), sum(len(v[1]) for v in stored.values())), flush=True)

    # 3
    big = rbytes(rnd, 2 * 1024 * 1024)
    r0 = c.set(b"xt:toobig", big)
    if not r0.startswith(b"SERVER_ERROR"):
        fail("a 2 MiB set answered %r, expected SERVER_ERROR" % r0)
    r = c.cmd(b"version")
    if not r.startswith(b"VERSION "):
        fail("after the refused 2 MiB set, version answered %r" % r)
    print("ok: 2 MiB set refused (%s), connection still serves (%s)" %
          (r0.decode(), r.decode()), flush=True)

    # 4
    errors = []
    lock = threading.Lock()
    replies = []

    def worker(t):
        try:
            rn = random.Random(100 + t)
            cc = Conn()
            for j in range(300):
                key = b"xt:t%d:%d" % (t, j)
                val = rbytes(rn, rn.choice([1, 50, 1000, 3000, 20000, 200000]) - rn.randrange(1))
                r = cc.set(key, val, j)
                if r != b"STORED":
                    raise RuntimeError("set %r answered %r" % (key, r))
                if cc.get_many([key]).get(key) != (j, val):
                    raise RuntimeError("get %r differs" % key)
                with lock:
                    stored[key] = (j, val)
            mine = []
            for j in range(500):
                r = cc.cmd(b"incr xt:ctr 1")
                mine.append(int(r))
            with lock:
                replies.extend(mine)
        except Exception as e:  # noqa: BLE001 - reported and failed below
            with lock:
                errors.append("thread %d: %s" % (t, e))

    r = c.set(b"xt:ctr", b"0")
    if r != b"STORED":
        fail("set xt:ctr answered %r" % r)
    ths = [threading.Thread(target=worker, args=(t,)) for t in range(6)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    if errors:
        fail("; ".join(errors))
    r = c.get_many([b"xt:ctr"])
    if r.get(b"xt:ctr", (0, b""))[1] != b"3000":
        fail("xt:ctr is %r after 6 x 500 incr" % (r.get(b"xt:ctr"),))
    if sorted(replies) != list(range(1, 3001)):
        fail("the 3000 incr replies are not exactly 1..3000")
    print("ok: 6 threads x 300 set/get identical; 6 x 500 incr -> 3000, replies exactly 1..3000",
          flush=True)
    stored[b"xt:ctr"] = (0, b"3000")

    # every value once more, in one multi-get per 200 keys
    keys = list(stored)
    for i in range(0, len(keys), 200):
        part = keys[i:i + 200]
        got = c.get_many(part)
        for k in part:
            if got.get(k) != stored[k]:
                fail("final read of %r differs or is missing" % k)
    print("ok: all %d keys read back identical at the end" % len(keys), flush=True)

    # 5
    c.send(b"stats\r\n")
    st = {}
    while True:
        ln = c.line()
        if ln == b"END":
            break
        p = ln.split()
        st[p[1].decode()] = p[2].decode()
    print("stats: curr_items %s total_items %s curr_connections %s total_connections %s" %
          (st.get("curr_items"), st.get("total_items"), st.get("curr_connections"),
           st.get("total_connections")), flush=True)
    print("STAT_curr_items=%s" % st.get("curr_items"), flush=True)


main()
