#!/usr/bin/env python3
"""The kernel peer of tests/netns/t_stat.sh (ns B), and its small clients.

  stat_peer.py servers DIR     listens on 7200 (sends 5000 bytes, then holds),
                               7201 (holds, never reads, small receive buffer),
                               7202 (holds); writes DIR/peer.ready; runs until
                               killed
  stat_peer.py clients IP N PORT [SRCPORT]
                               opens N connections to IP:PORT (source port
                               SRCPORT, SRCPORT+1, ... if given) and holds
                               them until killed; writes nothing
  stat_peer.py listen IP PORT FILE
                               a listener on IP:PORT that holds what it
                               accepts; writes FILE when listening
  stat_peer.py bulk IP PORT BYTES
                               sends BYTES to IP:PORT, closes, exits 0
"""
import os
import socket
import sys
import threading
import time


def hold(conn, greeting=b""):
    if greeting:
        conn.sendall(greeting)
    while True:
        time.sleep(3600)


def serve(port, greeting=b"", rcvbuf=0, ip="0.0.0.0"):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.bind((ip, port))
    s.listen(16)
    while True:
        c, _ = s.accept()
        threading.Thread(target=hold, args=(c, greeting), daemon=True).start()


def main():
    mode = sys.argv[1]
    if mode == "servers":
        d = sys.argv[2]
        for port, greet, rb in ((7200, b"g" * 5000, 0), (7201, b"", 65536), (7202, b"", 0)):
            threading.Thread(target=serve, args=(port, greet, rb), daemon=True).start()
        time.sleep(0.3)
        open(os.path.join(d, "peer.ready"), "w").close()
        while True:
            time.sleep(3600)
    elif mode == "clients":
        ip, n, port = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        src = int(sys.argv[5]) if len(sys.argv) > 5 else 0
        keep = []
        for i in range(n):
            c = socket.socket()
            c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if src:
                c.bind(("0.0.0.0", src + i))
            c.settimeout(10)
            c.connect((ip, port))
            keep.append(c)
        print("connected", n, flush=True)
        while True:
            time.sleep(3600)
    elif mode == "listen":
        threading.Thread(target=serve, args=(int(sys.argv[3]),), kwargs={"ip": sys.argv[2]}, daemon=True).start()
        time.sleep(0.3)
        open(sys.argv[4], "w").close()
        while True:
            time.sleep(3600)
    elif mode == "bulk":
        ip, port, nbytes = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        c = socket.create_connection((ip, port), timeout=30)
        chunk = b"b" * 65536
        left = nbytes
        while left > 0:
            c.sendall(chunk[: min(left, len(chunk))])
            left -= min(left, len(chunk))
        c.shutdown(socket.SHUT_WR)
        c.recv(1)  # the sink closes after reading everything
        c.close()
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main()
