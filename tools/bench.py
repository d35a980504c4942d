#!/usr/bin/env python3
"""xtcp benchmark: the same workloads with the server on the kernel and under
xtcp, in the same run, over a veth pair between two network namespaces.

    tools/bench.py [--reps N] [--quick] [--only REGEX] [--out DIR]
                   [--no-strace] [--no-callgrind] [--no-breakdown] [--perf]
                   [--two-hosts]

Layout (made here and removed on any exit; no traffic leaves it):
    ns A  veth-a  kernel 10.56.0.1/24, xtcp engine 10.56.0.3 (AF_PACKET)
    ns B  veth-b  kernel 10.56.0.2/24, the load generators (always the kernel)
xtcp runs with XTCP_MAC=auto (a MAC of the engine's own, so that the kernel
of ns A drops the engine's frames as another host's on arrival).
The server runs pinned to CPU 1, the client to CPU 0.

Workloads: sockperf ping-pong 64 B and 1 KiB (half round trip, as sockperf
reports it: avg, p50, p99, p99.9; xtcp with busy polling on), sockperf
throughput, redis-benchmark GET and SET -c 50 with and without -P 16, nginx
+ wrk keep-alive (4 KiB file) and with "Connection: close" (one process),
keep-alive again with a master and 2 workers (nginx_keepalive_2w: the
default kind of deployment, in the foreground as in a container; under
xtcp a fork family), and 1 GiB
iperf3 transfers into the server and (bulk_1GiB_send, -R) out of it.  For each: the server's CPU time per request (utime + stime
of the whole process and its children from /proc, all threads), for redis, nginx and the
transfer also both CPUs' busy time per request (/proc/stat: on veth the
kernel runs the receiving end's TCP input on the sender's CPU, so only the
sum compares the two modes fairly), and for sockperf 64 B and
redis GET the system calls per request (strace -c on a shorter run) and
user-space instructions per request (callgrind on a shorter run: this VM
has no hardware counters for perf stat; note that callgrind cannot see the
kernel's own TCP work, so the kernel column's instruction count leaves out
its whole network stack, while xtcp's includes it).

Every measurement is repeated --reps times (default 3), the kernel's and
xtcp's runs taking turns; the tables give the median and the spread
((max - min) / median) so the run says how noisy it was, the ratio of the
medians, and the median and range of the per-repetition ratios (paired).  Results: OUT/bench.md and OUT/bench.json (default build/bench/), plus
the raw tool outputs in OUT/raw/.  --perf runs every server under
perf record (cpu-clock, call graphs) and leaves OUT/raw/NAME.MODE.I.perf.txt,
the flat profile; the CPU figures of such a run count perf too.
Unless --no-breakdown, redis_get and nginx_close_4k run once more per mode
under a system-wide perf record (both CPUs, every task) over the client's
run, and a "where the time goes" table gives each CPU's microseconds per
request by category (tools/perf_breakdown.py), with an estimate of each
end's own work once the receive work veth runs on the sender's CPU is moved
to the end it serves.  A workload that fails is reported as
failed with its reason; the run goes on.

--two-hosts charges each end's receive work to its own side, as two real
hosts would: both veths get GRO on and TSO off (the kernel then segments in
software; veth hands TSO frames past NAPI), and threaded NAPI, each end's
napi/veth-* thread pinned to that end's CPU.  The server's CPU figures then
add its side's NAPI thread (the kernel server's TCP/IP input, xtcp's frame
delivery into the packet ring) and no longer hold the client's TCP input
that veth otherwise runs inside the server's sends.  Throughput and latency
of such a run are not comparable with a default run's.

Environment: XT_LIB=PATH runs another build's libxtcp.so (A/B of two
commits in the same minutes); XT_ENV="XTCP_A=x XTCP_B=y" adds settings to
every server under xtcp (A/B of a setting).
"""
import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import perf_breakdown  # tools/, beside this script

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIB = os.environ.get("XT_LIB", os.path.join(REPO, "build", "libxtcp.so"))
PID = os.getpid()
NS_A, NS_B = f"xtb-{PID}-a", f"xtb-{PID}-b"
IF_A, IF_B = "veth-a", "veth-b"
ADDR_A, ADDR_B, ADDR_X = "10.56.0.1", "10.56.0.2", "10.56.0.3"
SERVER_CPU, CLIENT_CPU = "1", "0"
TICK = os.sysconf("SC_CLK_TCK")
SPIN_US = "1000"  # busy polling for the latency workloads under xtcp

procs = []  # every server we started
PERF = False  # --perf: servers run under perf record
TWO_HOSTS = False  # --two-hosts: threaded NAPI, each end's receive on its side
NAPI_SERVER = []  # pids of the server side's napi/veth-a-* threads
SYSPROF = None  # the breakdown runs: raw path of the system-wide profile of the client's run
SYSPROF_HZ = 999
LAST_REQS = 0  # requests the last redis or nginx run served


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def sh(cmd, check=True, timeout=120, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.strip()[-400:]}")
    return r


def netns_down():
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for ns in (NS_A, NS_B):
        if os.path.exists(f"/run/netns/{ns}"):
            r = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
            for p in r.stdout.split():
                try:
                    os.kill(int(p), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def netns_up():
    netns_down()
    for ns in (NS_A, NS_B):
        sh(["ip", "netns", "add", ns])
        sh(["ip", "-n", ns, "link", "set", "lo", "up"])
        sh(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"], check=False)
    sh(["ip", "-n", NS_A, "link", "add", IF_A, "type", "veth", "peer", "name", IF_B, "netns", NS_B])
    sh(["ip", "-n", NS_A, "addr", "add", f"{ADDR_A}/24", "dev", IF_A])
    sh(["ip", "-n", NS_B, "addr", "add", f"{ADDR_B}/24", "dev", IF_B])
    sh(["ip", "-n", NS_A, "link", "set", IF_A, "up"])
    sh(["ip", "-n", NS_B, "link", "set", IF_B, "up"])
    for _ in range(300):
        a = sh(["ip", "netns", "exec", NS_A, "cat", f"/sys/class/net/{IF_A}/carrier"], check=False).stdout.strip()
        b = sh(["ip", "netns", "exec", NS_B, "cat", f"/sys/class/net/{IF_B}/carrier"], check=False).stdout.strip()
        if a == "1" and b == "1":
            break
        time.sleep(0.01)
    else:
        raise RuntimeError("veth carrier did not come up")
    if TWO_HOSTS:
        napi_up()


def napi_threads(dev):
    """pids of the kernel threads that poll dev's NAPI instances."""
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/comm") as f:
                    comm = f.read().strip()
            except OSError:
                continue
            if comm.startswith(f"napi/{dev}-"):
                pids.append(int(d))
    return pids


def napi_up():
    """--two-hosts: veth takes the NAPI path only with GRO on and without
    TSO frames; threaded NAPI then runs each receive in a napi/veth-* kernel
    thread instead of in the sender's softirq, pinned here to the CPU of the
    receiving end."""
    global NAPI_SERVER
    for ns, dev in ((NS_A, IF_A), (NS_B, IF_B)):
        sh(["ip", "netns", "exec", ns, "ethtool", "-K", dev, "gro", "on", "tso", "off"])
        sh(["ip", "netns", "exec", ns, "sh", "-c", f"echo 1 > /sys/class/net/{dev}/threaded"])
    NAPI_SERVER = napi_threads(IF_A)
    client_threads = napi_threads(IF_B)
    if not NAPI_SERVER or not client_threads:
        raise RuntimeError("--two-hosts: no napi/veth-* threads after enabling threaded NAPI")
    for pid in NAPI_SERVER:
        sh(["taskset", "-pc", SERVER_CPU, str(pid)])
    for pid in client_threads:
        sh(["taskset", "-pc", CLIENT_CPU, str(pid)])


def xtcp_env(spin=False):
    # A MAC of the engine's own: ns A's kernel then drops the engine's frames
    # on arrival (another host's) instead of routing each one to nowhere.
    e = {"LD_PRELOAD": LIB, "XTCP_IFACE": IF_A, "XTCP_IP": f"{ADDR_X}/24", "XTCP_MAC": "auto"}
    if spin:
        e["XTCP_SPIN_US"] = SPIN_US
    for kv in os.environ.get("XT_ENV", "").split():
        k, _, v = kv.partition("=")
        e[k] = v
    return e


def start_server(mode, argv, raw, spin=False, wrap=None):
    """Starts argv in ns A on the server CPU; returns the Popen (its pid is
    the server's own: ip netns exec, taskset and env all exec)."""
    env = ["env"] + [f"{k}={v}" for k, v in (xtcp_env(spin) if mode == "xtcp" else {}).items()]
    if PERF and not wrap:
        wrap = ["perf", "record", "-q", "-e", "cpu-clock", "-F", "1999", "-g", "-o", raw + ".perf.data", "--"]
    cmd = ["ip", "netns", "exec", NS_A, "taskset", "-c", SERVER_CPU] + env + (wrap or []) + argv
    out = open(raw + ".server.out", "w")
    p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    procs.append(p)
    return p


def stop_server(p):
    try:
        os.killpg(p.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=10)
    data = [a for a in p.args if a.endswith(".perf.data")] if PERF else []
    if data and os.path.exists(data[0]):
        r = sh(["perf", "report", "--stdio", "--no-children", "-g", "none", "--percent-limit", "0.5",
                "-i", data[0]], check=False, timeout=300)
        open(data[0][:-len(".data")] + ".txt", "w").write(r.stdout)


@contextlib.contextmanager
def sysprof():
    """In a breakdown run: perf record on both CPUs, every task, around the
    client's run (stopped however the run ends); otherwise nothing."""
    if not SYSPROF:
        yield
        return
    p = subprocess.Popen(["perf", "record", "-q", "-a", "-C", f"{CLIENT_CPU},{SERVER_CPU}", "-e", "cpu-clock",
                          "-F", str(SYSPROF_HZ), "-g", "-o", SYSPROF + ".perf.data"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    procs.append(p)
    time.sleep(1.0)  # perf has its buffers mapped and is sampling
    try:
        yield
    finally:
        p.send_signal(signal.SIGINT)
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def client(argv, timeout=120):
    return sh(["ip", "netns", "exec", NS_B, "taskset", "-c", CLIENT_CPU] + argv, timeout=timeout)


def wait_port(addr, port, p, secs=15):
    """Until a TCP connect from ns B to addr:port succeeds."""
    code = (f"import socket,sys\ns=socket.socket();s.settimeout(0.5)\n"
            f"sys.exit(0 if s.connect_ex(('{addr}',{port}))==0 else 1)")
    end = time.time() + secs
    while time.time() < end:
        if p.poll() is not None:
            raise RuntimeError(f"server exited ({p.returncode}) before listening")
        if sh(["ip", "netns", "exec", NS_B, "python3", "-c", code], check=False).returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing accepts on {addr}:{port} after {secs}s")


def cpu_ticks(pid):
    """utime + stime of pid and every live descendant (a server under perf
    record is perf's child)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0
    t = int(fields[11]) + int(fields[12])  # utime + stime (fields 14, 15)
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = f.read().split()
    except FileNotFoundError:
        kids = []
    return t + sum(cpu_ticks(int(k)) for k in kids)


def srv_ticks(pid):
    """The server's CPU ticks: its process tree, and with --two-hosts its
    side's NAPI threads too."""
    return cpu_ticks(pid) + sum(cpu_ticks(k) for k in NAPI_SERVER)


def sys_busy():
    """Busy time of every CPU together (jiffies): /proc/stat minus idle and
    iowait.  Softirq work lands on whichever CPU runs it (on veth, the
    sender's), so only the sum of both ends is comparable between modes."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v[:8]) - v[3] - v[4]  # user..steal, minus idle and iowait


def addr_of(mode):
    return ADDR_X if mode == "xtcp" else ADDR_A


# --- workloads: each returns (metrics dict, requests or bytes for per-unit costs)

def sockperf_pp(mode, raw, size, secs):
    addr = addr_of(mode)
    p = start_server(mode, ["sockperf", "sr", "--tcp", "-i", addr, "-p", "11111"], raw, spin=True)
    try:
        wait_port(addr, 11111, p)
        c0 = srv_ticks(p.pid)
        r = client(["sockperf", "pp", "--tcp", "-i", addr, "-p", "11111", "-m", str(size), "-t", str(secs)],
                   timeout=secs + 60)
        c1 = srv_ticks(p.pid)
    finally:
        stop_server(p)
    txt = re.sub(r"\x1b\[[0-9;]*m", "", r.stdout + r.stderr)
    open(raw + ".client.out", "w").write(txt)
    m = {}
    g = re.search(r"avg-latency=([\d.]+)", txt)
    m["avg_us"] = float(g.group(1))
    for pct, key in (("50.000", "p50_us"), ("99.000", "p99_us"), ("99.900", "p99.9_us")):
        m[key] = float(re.search(r"percentile " + re.escape(pct) + r" =\s*([\d.]+)", txt).group(1))
    n = int(re.search(r"\[Valid Duration\].*?ReceivedMessages=(\d+)", txt).group(1))
    m["cpu_us_per_req"] = (c1 - c0) * 1e6 / TICK / max(n, 1)
    return m


def sockperf_tp(mode, raw, secs):
    addr = addr_of(mode)
    p = start_server(mode, ["sockperf", "sr", "--tcp", "-i", addr, "-p", "11112"], raw)
    try:
        wait_port(addr, 11112, p)
        c0 = srv_ticks(p.pid)
        r = client(["sockperf", "tp", "--tcp", "-i", addr, "-p", "11112", "-m", "1024", "-t", str(secs)],
                   timeout=secs + 60)
        c1 = srv_ticks(p.pid)
    finally:
        stop_server(p)
    txt = re.sub(r"\x1b\[[0-9;]*m", "", r.stdout + r.stderr)
    open(raw + ".client.out", "w").write(txt)
    rate = float(re.search(r"Message Rate is (\d+)", txt).group(1))
    mbps = float(re.search(r"BandWidth is [\d.]+ MBps \(([\d.]+) Mbps\)", txt).group(1))
    return {"msg_per_s": rate, "mbit_s": mbps, "cpu_us_per_req": (c1 - c0) * 1e6 / TICK / max(rate * secs, 1)}


def redis_server(mode, raw, wrap=None):
    d = tempfile.mkdtemp(prefix="xtb-redis-")
    argv = ["redis-server", "--port", "6379", "--bind", addr_of(mode), "--save", "", "--appendonly", "no",
            "--protected-mode", "no", "--dir", d, "--daemonize", "no", "--logfile", ""]
    return start_server(mode, argv, raw, wrap=wrap), d


def redis(mode, raw, test, pipeline, n):
    addr = addr_of(mode)
    p, d = redis_server(mode, raw)
    try:
        wait_port(addr, 6379, p)
        argv = ["redis-benchmark", "-h", addr, "-p", "6379", "-c", "50", "-n", str(n), "-t", test, "--csv"]
        if pipeline > 1:
            argv += ["-P", str(pipeline)]
        with sysprof():
            c0, s0 = srv_ticks(p.pid), sys_busy()
            r = client(argv, timeout=300)
            c1, s1 = srv_ticks(p.pid), sys_busy()
    finally:
        stop_server(p)
        shutil.rmtree(d, ignore_errors=True)
    open(raw + ".client.out", "w").write(r.stdout + r.stderr)
    rows = [l for l in r.stdout.splitlines() if l.startswith('"' + test.upper())]
    if not rows:
        raise RuntimeError("redis-benchmark printed no result: " + (r.stdout + r.stderr)[-300:])
    f = [x.strip('"') for x in rows[0].split(",")]
    global LAST_REQS
    LAST_REQS = n
    # "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
    return {"rps": float(f[1]), "p50_ms": float(f[4]), "p99_ms": float(f[6]),
            "cpu_us_per_req": (c1 - c0) * 1e6 / TICK / n, "both_cpu_us_per_req": (s1 - s0) * 1e6 / TICK / n}


NGINX_CONF = """worker_processes 1;
master_process off;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen {addr}:8080 reuseport backlog=4096;
        root {d}/www;
    }}
}}
"""


def nginx(mode, raw, close, secs, workers=0):
    """workers=0: one process (master_process off); else a master and that
    many workers (they run as nobody: the files are world-readable)."""
    addr = addr_of(mode)
    d = tempfile.mkdtemp(prefix="xtb-nginx-")
    os.chmod(d, 0o755)
    os.makedirs(d + "/www")
    with open(d + "/www/4k", "wb") as f:
        f.write(os.urandom(4096))
    os.chmod(d + "/www/4k", 0o644)
    conf = NGINX_CONF.format(d=d, addr=addr)
    if workers:
        conf = conf.replace("worker_processes 1;\nmaster_process off;",
                            f"worker_processes {workers};\nmaster_process on;")
    open(d + "/nginx.conf", "w").write(conf)
    p = start_server(mode, ["nginx", "-p", d, "-c", d + "/nginx.conf", "-e", d + "/error.log"], raw)
    try:
        wait_port(addr, 8080, p)
        argv = ["wrk", "-t", "1", "-c", "100", "-d", f"{secs}s", "--latency", f"http://{addr}:8080/4k"]
        if close:
            argv[1:1] = ["-H", "Connection: close"]
        with sysprof():
            c0, s0 = srv_ticks(p.pid), sys_busy()
            r = client(argv, timeout=secs + 60)
            c1, s1 = srv_ticks(p.pid), sys_busy()
    finally:
        stop_server(p)
        shutil.rmtree(d, ignore_errors=True)
    txt = r.stdout + r.stderr
    open(raw + ".client.out", "w").write(txt)
    rps = float(re.search(r"Requests/sec:\s*([\d.]+)", txt).group(1))
    reqs = int(re.search(r"(\d+) requests in", txt).group(1))
    global LAST_REQS
    LAST_REQS = reqs
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", txt)
    errs = sum(int(x) for x in m.groups()) if m else 0
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", txt)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", txt)
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    return {"rps": rps, "p99_ms": float(p99.group(1)) * scale[p99.group(2)], "errors": errs,
            "non_2xx": int(non2xx.group(1)) if non2xx else 0, "cpu_us_per_req": (c1 - c0) * 1e6 / TICK / max(reqs, 1),
            "both_cpu_us_per_req": (s1 - s0) * 1e6 / TICK / max(reqs, 1)}


def bulk(mode, raw, nbytes, reverse=False):
    """1 GiB into the server (iperf3's default), or out of it (reverse: -R)."""
    addr = addr_of(mode)
    p = start_server(mode, ["iperf3", "-s", "-1", "-B", addr, "-p", "5201"], raw)
    try:
        time.sleep(0.3)  # iperf3 -1 serves one client: no probe connection
        c0, s0 = srv_ticks(p.pid), sys_busy()
        r = client(["iperf3", "-c", addr, "-p", "5201", "-n", str(nbytes), "-J"] + (["-R"] if reverse else []),
                   timeout=300)
        c1, s1 = srv_ticks(p.pid), sys_busy()
    finally:
        stop_server(p)
    open(raw + ".client.out", "w").write(r.stdout + r.stderr)
    j = json.loads(r.stdout)
    if "error" in j:
        raise RuntimeError("iperf3: " + j["error"])
    gbit = j["end"]["sum_received"]["bits_per_second"] / 1e9
    return {"gbit_s": gbit, "cpu_ms_per_gb": (c1 - c0) * 1e3 / TICK / (nbytes / 1e9),
            "both_cpu_ms_per_gb": (s1 - s0) * 1e3 / TICK / (nbytes / 1e9)}


# --- system calls and instructions (one run each, shorter) ---------------

def strace_count(mode, raw, kind, n):
    """System calls of the server per request, strace -c -f attached."""
    addr = addr_of(mode)
    if kind == "redis_get":
        p, d = redis_server(mode, raw)
        port = 6379
    else:
        p = start_server(mode, ["sockperf", "sr", "--tcp", "-i", addr, "-p", "11113"], raw, spin=True)
        d, port = None, 11113
    try:
        wait_port(addr, port, p)
        # under --perf the server is perf's child: trace it, not perf
        pids = [p.pid]
        if PERF:
            with open(f"/proc/{p.pid}/task/{p.pid}/children") as f:
                pids = [int(k) for k in f.read().split()] or pids
        st = subprocess.Popen(["strace", "-c", "-f", "-q", "-o", raw + ".strace"] +
                              [a for x in pids for a in ("-p", str(x))],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        procs.append(st)
        time.sleep(1.0)
        if kind == "redis_get":
            client(["redis-benchmark", "-h", addr, "-p", "6379", "-c", "50", "-n", str(n), "-t", "get", "--csv"])
        else:
            r = client(["sockperf", "pp", "--tcp", "-i", addr, "-p", "11113", "-m", "64", "-t", "3"])
            txt = re.sub(r"\x1b\[[0-9;]*m", "", r.stdout + r.stderr)
            n = int(re.search(r"\[Total Run\].*?ReceivedMessages=(\d+)", txt).group(1))
        os.killpg(st.pid, signal.SIGINT)
        st.wait(timeout=30)
    finally:
        stop_server(p)
        if d:
            shutil.rmtree(d, ignore_errors=True)
    txt = open(raw + ".strace").read()
    calls = 0
    for line in txt.splitlines():
        f = line.split()
        if f and f[-1] == "total" and len(f) >= 5:
            calls = int(f[3])  # % time, seconds, usecs/call, calls, [errors], total
    if not calls:
        raise RuntimeError("strace counted no system calls")
    return calls / max(n, 1)


def callgrind_run(mode, raw, n):
    """Total user-space instructions of a redis-server that served n GETs
    (callgrind, from start to exit)."""
    addr = addr_of(mode)
    out = f"{raw}.{n}.callgrind"
    wrap = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "-q"]
    p, d = redis_server(mode, raw, wrap=wrap)
    try:
        wait_port(addr, 6379, p, secs=60)
        if n:
            client(["redis-benchmark", "-h", addr, "-p", "6379", "-c", "50", "-n", str(n), "-t", "get", "--csv"],
                   timeout=600)
    finally:
        try:
            os.killpg(p.pid, signal.SIGTERM)  # redis exits cleanly; valgrind writes its totals
        except ProcessLookupError:
            pass
        p.wait(timeout=120)
        shutil.rmtree(d, ignore_errors=True)
    for line in open(out):
        if line.startswith("totals:") or line.startswith("summary:"):
            return int(line.split()[1])
    raise RuntimeError("callgrind wrote no totals")


def callgrind_count(mode, raw, n):
    """User-space instructions of redis-server per GET: the difference of two
    runs (n and 0 requests) over n, so start-up and shutdown cancel out."""
    return (callgrind_run(mode, raw, n) - callgrind_run(mode, raw, 0)) / n


# --- the run -----------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="1 repetition, short runs")
    ap.add_argument("--only", default="", help="only workloads whose name matches this regex")
    ap.add_argument("--out", default=os.path.join(REPO, "build", "bench"))
    ap.add_argument("--no-strace", action="store_true")
    ap.add_argument("--no-callgrind", action="store_true")
    ap.add_argument("--modes", default="kernel,xtcp")
    ap.add_argument("--perf", action="store_true", help="profile every server with perf record")
    ap.add_argument("--no-breakdown", action="store_true",
                    help="skip the system-wide profile runs (where the time goes) of redis_get and nginx_close_4k")
    ap.add_argument("--two-hosts", action="store_true",
                    help="threaded NAPI: each end's receive work on its own CPU, the server's counted")
    a = ap.parse_args()
    global PERF, TWO_HOSTS
    PERF = a.perf
    TWO_HOSTS = a.two_hosts
    if os.geteuid() != 0:
        sys.exit("bench: needs root (network namespaces)")
    for tool in ("sockperf", "redis-server", "redis-benchmark", "nginx", "wrk", "iperf3", "strace", "valgrind",
                 "taskset", "ethtool", "perf"):
        if not shutil.which(tool):
            sys.exit(f"bench: {tool} is missing: run tools/install-deps.sh")
    if not os.path.exists(LIB):
        sys.exit(f"bench: {LIB} is missing: run make")
    reps = 1 if a.quick else a.reps
    secs = 2 if a.quick else 4
    n_redis = 50000 if a.quick else 200000
    modes = a.modes.split(",")
    os.makedirs(os.path.join(a.out, "raw"), exist_ok=True)

    workloads = [
        ("sockperf_pp_64", lambda m, r: sockperf_pp(m, r, 64, secs)),
        ("sockperf_pp_1k", lambda m, r: sockperf_pp(m, r, 1024, secs)),
        ("sockperf_tp_1k", lambda m, r: sockperf_tp(m, r, secs)),
        ("redis_get", lambda m, r: redis(m, r, "get", 1, n_redis)),
        ("redis_set", lambda m, r: redis(m, r, "set", 1, n_redis)),
        ("redis_get_P16", lambda m, r: redis(m, r, "get", 16, n_redis * 4)),
        ("redis_set_P16", lambda m, r: redis(m, r, "set", 16, n_redis * 4)),
        ("nginx_keepalive_4k", lambda m, r: nginx(m, r, False, secs)),
        ("nginx_close_4k", lambda m, r: nginx(m, r, True, secs)),
        ("nginx_keepalive_2w", lambda m, r: nginx(m, r, False, secs, workers=2)),
        ("bulk_1GiB", lambda m, r: bulk(m, r, 1 << 30)),
        ("bulk_1GiB_send", lambda m, r: bulk(m, r, 1 << 30, reverse=True)),
    ]
    if a.only:
        workloads = [w for w in workloads if re.search(a.only, w[0])]

    results = {}
    t0 = time.time()

    def on_signal(sig, frame):
        netns_down()
        sys.exit(128 + sig)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        netns_up()
        for name, fn in workloads:
            # The modes take turns (kernel, xtcp, kernel, xtcp, ...): the
            # host's load drifts over minutes, and both columns should see
            # the same drift.
            runs, errs = {m: [] for m in modes}, {m: None for m in modes}
            for i in range(reps):
                for mode in modes:
                    if errs[mode]:
                        continue
                    raw = os.path.join(a.out, "raw", f"{name}.{mode}.{i}")
                    log(f"{name} {mode} run {i + 1}/{reps} ({time.time() - t0:.0f} s)")
                    try:
                        runs[mode].append(fn(mode, raw))
                    except Exception as e:  # noqa: BLE001 - reported in the table
                        errs[mode] = str(e)[:300]
                        log(f"{name} {mode}: FAILED: {errs[mode]}")
            for mode in modes:
                results.setdefault(name, {})[mode] = {"runs": runs[mode], "error": errs[mode]}
        extra = {}
        if not a.no_strace:
            for kind in ("sockperf_pp_64", "redis_get"):
                if a.only and not re.search(a.only, kind):
                    continue
                for mode in modes:
                    raw = os.path.join(a.out, "raw", f"strace.{kind}.{mode}")
                    log(f"syscalls per request: {kind} {mode}")
                    try:
                        extra.setdefault(kind, {}).setdefault(mode, {})["syscalls_per_req"] = strace_count(
                            mode, raw, "redis_get" if kind == "redis_get" else "pp", 20000)
                    except Exception as e:  # noqa: BLE001
                        log(f"strace {kind} {mode}: FAILED: {e}")
        if not a.no_callgrind and (not a.only or re.search(a.only, "redis_get")):
            for mode in modes:
                raw = os.path.join(a.out, "raw", f"callgrind.redis_get.{mode}")
                log(f"instructions per request (callgrind): redis_get {mode}")
                try:
                    extra.setdefault("redis_get", {}).setdefault(mode, {})["user_instr_per_req"] = callgrind_count(
                        mode, raw, 5000 if a.quick else 20000)
                except Exception as e:  # noqa: BLE001
                    log(f"callgrind {mode}: FAILED: {e}")
        if not a.no_breakdown:
            run_breakdowns(a, modes, {n: f for n, f in workloads}, extra)
    finally:
        netns_down()
    write_results(a.out, results, extra, reps, time.time() - t0)


BREAKDOWN_WORKLOADS = ("redis_get", "nginx_close_4k")
BREAKDOWN_COMMS = {"redis_get": "redis-server,redis-benchmark", "nginx_close_4k": "nginx,wrk"}


def run_breakdowns(a, modes, fns, extra):
    """One more run of each breakdown workload per mode under a system-wide
    perf record: where each CPU's time went (tools/perf_breakdown.py)."""
    global SYSPROF
    for name in BREAKDOWN_WORKLOADS:
        if name not in fns:
            continue
        for mode in modes:
            raw = os.path.join(a.out, "raw", f"breakdown.{name}.{mode}")
            log(f"where the time goes (perf record -a): {name} {mode}")
            SYSPROF = raw
            try:
                fns[name](mode, raw)
                comms = set(BREAKDOWN_COMMS[name].split(","))
                by_cpu = perf_breakdown.breakdown(raw + ".perf.data", comms)
                pr = perf_breakdown.per_request(by_cpu, SYSPROF_HZ, max(LAST_REQS, 1))
                extra.setdefault("breakdown", {}).setdefault(name, {})[mode] = {
                    "requests": LAST_REQS, "us_per_req": {str(c): v for c, v in pr.items()}}
            except Exception as e:  # noqa: BLE001 - reported in the table
                log(f"breakdown {name} {mode}: FAILED: {e}")
                extra.setdefault("breakdown", {}).setdefault(name, {})[mode] = {"error": str(e)[:300]}
            finally:
                SYSPROF = None
                try:
                    os.unlink(raw + ".perf.data")  # large; the table keeps what it said
                except FileNotFoundError:
                    pass


def breakdown_lines(bd):
    """The "where the time goes" tables: per category, microseconds per
    request on the server's CPU and the client's, kernel and xtcp."""
    lines = []
    for name, by_mode in bd.items():
        lines += ["", f"### {name}: where the time goes, microseconds per request", ""]
        errs = [f"{m}: {v['error']}" for m, v in by_mode.items() if "error" in v]
        if errs:
            lines.append("FAILED: " + "; ".join(errs).replace("|", "/"))
            continue
        cols = [(SERVER_CPU, "kernel"), (SERVER_CPU, "xtcp"), (CLIENT_CPU, "kernel"), (CLIENT_CPU, "xtcp")]
        get = lambda cpu, mode, k: by_mode.get(mode, {}).get("us_per_req", {}).get(cpu, {}).get(k, 0.0)  # noqa: E731
        lines += [f"| category | server CPU {SERVER_CPU}, kernel | server CPU, xtcp | client CPU {CLIENT_CPU}, kernel "
                  f"| client CPU, xtcp |", "|---|---|---|---|---|"]
        for k in perf_breakdown.CATEGORIES:
            if any(get(c, m, k) >= 0.005 for c, m in cols):
                lines.append(f"| {k} | " + " | ".join(f"{get(c, m, k):.2f}" for c, m in cols) + " |")
        busy = {(c, m): sum(v for k, v in by_mode.get(m, {}).get("us_per_req", {}).get(c, {}).items()
                            if k not in ("idle", "other tasks")) for c, m in cols}
        lines.append("| **busy** (all but idle and other tasks) | " +
                     " | ".join(f"**{busy[(c, m)]:.2f}**" for c, m in cols) + " |")
        # Each end's own work: on veth a receive runs on the sender's CPU, so
        # the network input on one CPU is the other end's.
        rx = ("softirq: kernel TCP/IP", "softirq: AF_PACKET", "softirq: other")
        own, c_rx = {}, {}
        for m in ("kernel", "xtcp"):
            s_rx = sum(get(SERVER_CPU, m, k) for k in rx)
            c_rx[m] = sum(get(CLIENT_CPU, m, k) for k in rx)
            own[("server", m)] = busy[(SERVER_CPU, m)] - s_rx + c_rx[m]
            own[("client", m)] = busy[(CLIENT_CPU, m)] - c_rx[m] + s_rx
        lines.append("| each end's own work (estimate: network input moved to the end it is for) | " +
                     " | ".join(f"{own[(e, m)]:.2f}" for e, m in (("server", "kernel"), ("server", "xtcp"),
                                                                  ("client", "kernel"), ("client", "xtcp"))) + " |")
        if own[("server", "kernel")] > 0:
            lines.append("")
            lines.append(f"Server's own work, xtcp/kernel: {own[('server', 'xtcp')] / own[('server', 'kernel')]:.2f}; "
                         f"client CPU busy per request, kernel/xtcp (the request rate ratio a saturated client CPU allows): "
                         f"{busy[(CLIENT_CPU, 'kernel')] / max(busy[(CLIENT_CPU, 'xtcp')], 1e-9):.2f}; with none "
                         f"of the server's receive work on the client's CPU it would be "
                         f"{busy[(CLIENT_CPU, 'kernel')] / max(busy[(CLIENT_CPU, 'xtcp')] - c_rx['xtcp'], 1e-9):.2f}.  Requests: kernel "
                         f"{by_mode.get('kernel', {}).get('requests')}, xtcp {by_mode.get('xtcp', {}).get('requests')}.")
    if lines:
        lines += ["", "From one extra run per mode under `perf record -a -g -e cpu-clock -F "
                  f"{SYSPROF_HZ}` over the client's run (categories: tools/perf_breakdown.py --help).  On veth "
                  "a frame's receive runs in the sender's system call: the softirq rows on the client's CPU are "
                  "the server's receive (the kernel server's TCP input, or xtcp's AF_PACKET delivery), and the "
                  "kernel TCP/IP row on the server's CPU is mostly the client's; the estimate row moves them "
                  "(with the rest of the softirq rows) to the end they serve.  When one end answers inside "
                  "the softirq (a SYN-ACK, an ACK of a FIN) that answer's input stays on the wrong side, so the "
                  "estimate is rough for nginx_close_4k.  This guest loses some kernel call chains and delays "
                  "samples taken with interrupts off to the point they are turned back on (pvm_irq_enable)."]
    return lines


def summarize(runs, key):
    vals = [r[key] for r in runs if key in r]
    if not vals:
        return None, None
    med = statistics.median(vals)
    spread = (max(vals) - min(vals)) / med if med else 0.0
    return med, spread


def paired_ratios(by_mode, key):
    """xtcp run i over kernel run i (they ran back to back)."""
    k, x = by_mode.get("kernel"), by_mode.get("xtcp")
    if not k or not x:
        return []
    return [b[key] / a[key] for a, b in zip(k["runs"], x["runs"]) if a.get(key) and key in b]


def machine():
    cpu = "?"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {"cpu": cpu, "cpus": os.cpu_count(), "kernel": os.uname().release,
            "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}


def write_results(out, results, extra, reps, elapsed):
    mach = machine()
    lines = ["# xtcp benchmark: kernel vs xtcp, same run", "",
             f"Machine: {mach['cpu']}, {mach['cpus']} CPUs, Linux {mach['kernel']}; {mach['date']}. "
             f"Server pinned to CPU {SERVER_CPU}, client to CPU {CLIENT_CPU}, veth between two namespaces. "
             f"{reps} repetition(s) per figure, kernel and xtcp runs alternating; median shown, spread = (max-min)/median in brackets. "
             f"Run took {elapsed:.0f} s.", "",
             "xtcp/kernel is the ratio of the medians; paired is the median of the per-repetition "
             "ratios (each xtcp run against the kernel run just before it) with their range: the "
             "host's drift between pairs cancels out of it.", "",
             *(["Accounting: --two-hosts. Both veths have GRO on, TSO off and threaded NAPI; each end's "
                "napi/veth-* thread is pinned to its CPU, and the server's cpu_us_per_req (and cpu_ms_per_gb) "
                "includes its side's NAPI thread: every receive is charged to the receiving end, as on two "
                "hosts. Not comparable with a default run.", ""] if TWO_HOSTS else []),
             "| workload | metric | kernel | xtcp | xtcp/kernel | paired |", "|---|---|---|---|---|---|"]
    spreads = []
    for name, by_mode in results.items():
        keys = []
        for mode in by_mode.values():
            for r in mode["runs"]:
                for k in r:
                    if k not in keys:
                        keys.append(k)
        for mode, v in by_mode.items():
            if v["error"]:
                lines.append(f"| {name} | FAILED ({mode}) | {v['error'].replace('|', '/')} | | | |")
        for k in keys:
            cells = []
            meds = {}
            for mode in ("kernel", "xtcp"):
                v = by_mode.get(mode)
                med, spread = summarize(v["runs"], k) if v else (None, None)
                meds[mode] = med
                if med is None:
                    cells.append("-")
                else:
                    cells.append(f"{med:.3g} [{spread * 100:.0f}%]" if reps > 1 else f"{med:.3g}")
                    if reps > 1:
                        spreads.append(spread)
            ratio = f"{meds['xtcp'] / meds['kernel']:.2f}" if meds.get("xtcp") and meds.get("kernel") else "-"
            pr = paired_ratios(by_mode, k)
            paired = f"{statistics.median(pr):.2f} ({min(pr):.2f}-{max(pr):.2f})" if len(pr) > 1 else "-"
            lines.append(f"| {name} | {k} | {cells[0]} | {cells[1]} | {ratio} | {paired} |")
    for name, by_mode in extra.items():
        if name == "breakdown":
            continue
        for k in ("syscalls_per_req", "user_instr_per_req"):
            kv, xv = by_mode.get("kernel", {}).get(k), by_mode.get("xtcp", {}).get(k)
            if kv is None and xv is None:
                continue
            ratio = f"{xv / kv:.2f}" if kv and xv else "-"
            lines.append(f"| {name} | {k} | {kv if kv is None else f'{kv:.3g}'} | "
                         f"{xv if xv is None else f'{xv:.3g}'} | {ratio} | - |")
    bd_lines = breakdown_lines(extra.get("breakdown", {}))
    if spreads:
        lines += ["", f"Noise: median spread {statistics.median(spreads) * 100:.0f}%, "
                      f"worst {max(spreads) * 100:.0f}% over {len(spreads)} figures."]
    lines += ["", "Latencies are sockperf's half round trip; cpu_us_per_req is the server process's "
                  "utime+stime (all threads" + (", plus its side's NAPI thread" if TWO_HOSTS else "") +
                  ") over the requests served; both_cpu_us_per_req (and "
                  "both_cpu_ms_per_gb) is the busy time of both CPUs (server and client ends, softirqs "
                  "included) over the requests: on veth the kernel runs a receiver's TCP/IP input on the "
                  "sender's CPU, so the kernel server's own receive work is charged to the client's CPU, "
                  "while xtcp's is in its server process; user_instr_per_req counts user-space "
                  "instructions only (callgrind), so the kernel column misses the kernel's TCP/IP work."]
    if bd_lines:
        lines += ["", "## Where the time goes"] + bd_lines
    md = "\n".join(lines) + "\n"
    with open(os.path.join(out, "bench.md"), "w") as f:
        f.write(md)
    with open(os.path.join(out, "bench.json"), "w") as f:
        json.dump({"machine": mach, "two_hosts": TWO_HOSTS, "reps": reps, "elapsed_s": elapsed, "results": results, "extra": extra}, f,
                  indent=1)
    print(md)


if __name__ == "__main__":
    main()
