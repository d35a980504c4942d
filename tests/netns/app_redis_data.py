#!/usr/bin/env python3
"""Data for t_redis.sh: N keys with random printable values of many sizes.

usage: app_redis_data.py N OUTDIR

writes OUTDIR/load.resp   SET commands in RESP, for `redis-cli --pipe`
       OUTDIR/gets.txt    one `GET key` line per key, for redis-cli reading stdin
       OUTDIR/expect.txt  the values, one per line, in the same order
Values are base64 text (no spaces, quotes or newlines), 1 byte to 512 KiB:
mostly small, every 97th 64 KiB, every 499th 512 KiB.
"""
import base64
import os
import random
import sys


def main():
    n, out = int(sys.argv[1]), sys.argv[2]
    rnd = random.Random(4)
    load = open(os.path.join(out, "load.resp"), "wb")
    gets = open(os.path.join(out, "gets.txt"), "w")
    exp = open(os.path.join(out, "expect.txt"), "w")
    total = 0
    for i in range(n):
        if i % 499 == 7:
            size = 512 * 1024
        elif i % 97 == 3:
            size = 64 * 1024
        else:
            size = rnd.choice([1, 2, 10, 100, 1000, 1460, 1461, 4000]) + rnd.randrange(50)
        val = base64.b64encode(os.urandom(size))[:size]
        key = b"xt:k:%d" % i
        load.write(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(key), key, len(val), val))
        gets.write("GET %s\n" % key.decode())
        exp.write(val.decode() + "\n")
        total += size
    print(total)


main()
