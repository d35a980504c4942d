#!/usr/bin/env python3
"""Where each CPU's time went during a system-wide profile: a perf.data from
`perf record -a -g -e cpu-clock -F FREQ` sorted into a few categories by
call chain, in microseconds per request.

    tools/perf_breakdown.py PERF.DATA --requests N [--freq HZ] [--cpus 0,1]
    tools/perf_breakdown.py --self-test

tools/bench.py uses it for its "where the time goes" tables.  A sample's
category is decided by the first rule that matches its call chain (leaf to
root), so work done in a softirq inside a system call counts as the
softirq's and a sleep inside epoll_wait as the sleep:

  idle                       the idle task
  other tasks                kworkers, perf itself, anything but the
                             server and client processes (--comms)
  softirq: kernel TCP/IP     network input that reached tcp_v4_rcv (on veth
                             the receiver's TCP input runs in the sender's
                             system call: on the client's CPU it is the
                             server socket's input, on the server's the
                             client socket's)
  softirq: AF_PACKET         frames delivered into a packet socket's ring
                             (xtcp's receive; tpacket_rcv, packet_rcv)
  softirq: other             other softirq work
  sleep and wake-up          the scheduler under a system call or fault
  page faults
  syscall: send              send*, write, writev, sendfile (their own work:
                             the softirq they run is above)
  syscall: receive           read, recv*
  syscall: epoll/poll        epoll_wait, epoll_ctl, poll, ppoll, select
  syscall: other             accept, close, open, pread, fcntl, ...
                             (the call is told by the libc function that
                             entered the kernel, else by kernel functions
                             on the way: kernels that inline __x64_sys_*
                             keep no frame of their own for it)
  kernel, chain lost         a kernel sample whose chain names no entry
                             point (this PVM guest loses some)
  user: libxtcp              user space in libxtcp.so
  user: program              the rest of user space (the program, libc)
"""
import argparse
import collections
import subprocess
import sys

CATEGORIES = ["user: program", "user: libxtcp", "syscall: send", "syscall: receive", "syscall: epoll/poll",
              "syscall: other", "sleep and wake-up", "page faults", "softirq: kernel TCP/IP",
              "softirq: AF_PACKET", "softirq: other", "kernel, chain lost", "other tasks", "idle"]

# The system call a kernel sample is in: the libc wrapper just above the
# kernel entry names it (kernels that inline __x64_sys_* into do_syscall_64
# keep no per-call frame), else a kernel function on the way.
SEND_K = ("__sys_sendto", "__sys_sendmsg", "__sys_sendmmsg", "ksys_write", "do_writev", "do_sendfile")
RECV_K = ("__sys_recvfrom", "__sys_recvmsg", "__sys_recvmmsg", "ksys_read", "do_readv")
POLL_K = ("do_epoll_wait", "do_epoll_ctl", "do_sys_poll", "core_sys_select", "do_select")


def syscall_kind(syms):
    if "entry_SYSCALL_64_after_hwframe" in syms:
        i = syms.index("entry_SYSCALL_64_after_hwframe")
        user = syms[i + 1].lower() if i + 1 < len(syms) else ""
        if "pread" in user or "pwrite" in user:
            return "syscall: other"  # files
        if "epoll" in user or "poll" in user or "select" in user:
            return "syscall: epoll/poll"
        if "write" in user or "send" in user:
            return "syscall: send"
        if "read" in user or "recv" in user:
            return "syscall: receive"
    s = set(syms)
    if s & set(SEND_K):
        return "syscall: send"
    if s & set(RECV_K):
        return "syscall: receive"
    if s & set(POLL_K):
        return "syscall: epoll/poll"
    if "do_syscall_64" in s or any(x.startswith("__x64_sys_") for x in syms):
        return "syscall: other"
    return None


SLEEP = ("__schedule", "schedule", "schedule_hrtimeout_range_clock", "schedule_hrtimeout_range",
         "finish_task_switch.isra.0", "finish_task_switch")
SOFTIRQ = ("net_rx_action", "handle_softirqs", "__do_softirq", "do_softirq.part.0", "do_softirq")


def classify(comm, frames, comms=None):
    """frames: [(symbol, dso)], leaf first."""
    syms = [s for s, _ in frames]
    s = set(syms)
    if comm == "swapper" or "do_idle" in s:
        return "idle"
    if comms is not None and comm not in comms:
        return "other tasks"
    if s & set(SOFTIRQ):
        if "tcp_v4_rcv" in s:
            return "softirq: kernel TCP/IP"
        if "tpacket_rcv" in s or "packet_rcv" in s:
            return "softirq: AF_PACKET"
        return "softirq: other"
    if s & set(SLEEP):
        return "sleep and wake-up"
    if "asm_exc_page_fault" in s or "exc_page_fault" in s:
        return "page faults"
    kind = syscall_kind(syms)
    if kind:
        return kind
    if not frames:
        return "kernel, chain lost"
    if frames[0][1].startswith("[kernel"):
        return "kernel, chain lost"
    if "libxtcp" in frames[0][1]:
        return "user: libxtcp"
    return "user: program"


def parse(text):
    """perf script -F comm,cpu,ip,sym,dso output -> [(comm, cpu, frames)]."""
    out = []
    cur = None
    for line in text.splitlines():
        if not line.strip():
            if cur:
                out.append(cur)
            cur = None
            continue
        if line[0] not in " \t":
            if cur:
                out.append(cur)
            head = line.rsplit("[", 1)
            comm = head[0].strip()
            try:
                cpu = int(head[1].split("]")[0])
            except (IndexError, ValueError):
                cpu = -1
            cur = (comm, cpu, [])
            continue
        if cur is None:
            continue
        p = line.split(None, 1)
        if len(p) < 2:
            continue
        rest = p[1]
        dso = ""
        if rest.endswith(")") and " (" in rest:
            rest, dso = rest.rsplit(" (", 1)
            dso = dso[:-1]
        cur[2].append((rest.split("+")[0].strip(), dso))
    if cur:
        out.append(cur)
    return out


def breakdown(data, comms=None):
    """{cpu: Counter(category -> samples)} of a perf.data file."""
    r = subprocess.run(["perf", "script", "-i", data, "-F", "comm,cpu,ip,sym,dso"], capture_output=True,
                       text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError("perf script: " + r.stderr[-300:])
    by_cpu = collections.defaultdict(collections.Counter)
    for comm, cpu, frames in parse(r.stdout):
        by_cpu[cpu][classify(comm, frames, comms)] += 1
    return by_cpu


def per_request(by_cpu, freq, requests):
    """{cpu: {category: microseconds per request}} (cpu-clock samples at freq Hz)."""
    return {cpu: {k: v * 1e6 / freq / requests for k, v in c.items()} for cpu, c in by_cpu.items()}


SELF_TEST = [
    # (comm, frames leaf first, expected)
    ("swapper", [("pvm_safe_halt_hc", "[kernel.kallsyms]"), ("default_idle", "[kernel.kallsyms]"),
                 ("do_idle", "[kernel.kallsyms]")], "idle"),
    ("redis-benchmark", [("tpacket_rcv", "[kernel.kallsyms]"), ("__netif_receive_skb_core", "[kernel.kallsyms]"),
                         ("net_rx_action", "[kernel.kallsyms]"), ("handle_softirqs", "[kernel.kallsyms]"),
                         ("__dev_queue_xmit", "[kernel.kallsyms]"), ("__x64_sys_sendto", "[kernel.kallsyms]"),
                         ("do_syscall_64", "[kernel.kallsyms]"), ("__send", "libc.so.6")],
     "softirq: AF_PACKET"),
    ("redis-benchmark", [("tcp_v4_rcv", "[kernel.kallsyms]"), ("net_rx_action", "[kernel.kallsyms]"),
                         ("__x64_sys_sendto", "[kernel.kallsyms]")], "softirq: kernel TCP/IP"),
    ("redis-server", [("skb_release_data", "[kernel.kallsyms]"), ("net_rx_action", "[kernel.kallsyms]")],
     "softirq: other"),
    ("redis-server", [("pvm_irq_enable", "[kernel.kallsyms]"), ("finish_task_switch.isra.0", "[kernel.kallsyms]"),
                      ("__schedule", "[kernel.kallsyms]"), ("do_epoll_wait", "[kernel.kallsyms]"),
                      ("__x64_sys_epoll_wait", "[kernel.kallsyms]")], "sleep and wake-up"),
    ("redis-server", [("packet_sendmsg", "[kernel.kallsyms]"), ("__sys_sendmmsg", "[kernel.kallsyms]"),
                      ("do_syscall_64", "[kernel.kallsyms]")], "syscall: send"),
    ("redis-server", [("pvm_irq_enable", "[kernel.kallsyms]"), ("do_syscall_64", "[kernel.kallsyms]"),
                      ("entry_SYSCALL_64_after_hwframe", "[kernel.kallsyms]"), ("__GI___libc_write", "libc.so.6")],
     "syscall: send"),
    ("nginx", [("tcp_recvmsg", "[kernel.kallsyms]"), ("ksys_read", "[kernel.kallsyms]"),
               ("do_syscall_64", "[kernel.kallsyms]")], "syscall: receive"),
    ("nginx", [("pvm_irq_enable", "[kernel.kallsyms]"), ("entry_SYSCALL_64_after_hwframe", "[kernel.kallsyms]"),
               ("__libc_recv", "libc.so.6")], "syscall: receive"),
    ("nginx", [("ep_poll_callback", "[kernel.kallsyms]"), ("entry_SYSCALL_64_after_hwframe", "[kernel.kallsyms]"),
               ("epoll_ctl", "libc.so.6")], "syscall: epoll/poll"),
    ("nginx", [("filemap_read", "[kernel.kallsyms]"), ("entry_SYSCALL_64_after_hwframe", "[kernel.kallsyms]"),
               ("__libc_pread", "libc.so.6")], "syscall: other"),
    ("nginx", [("do_filp_open", "[kernel.kallsyms]"), ("do_syscall_64", "[kernel.kallsyms]"),
               ("entry_SYSCALL_64_after_hwframe", "[kernel.kallsyms]"), ("__GI___libc_open", "libc.so.6")],
     "syscall: other"),
    ("nginx", [("clear_page_erms", "[kernel.kallsyms]"), ("exc_page_fault", "[kernel.kallsyms]")], "page faults"),
    ("nginx", [("pvm_irq_enable", "[kernel.kallsyms]")], "kernel, chain lost"),
    ("nginx", [("xt_tcp_parse", "/work/build/libxtcp.so"), ("xt_tcp_input", "/work/build/libxtcp.so")],
     "user: libxtcp"),
    ("nginx", [("ngx_http_parse_request_line", "/usr/sbin/nginx")], "user: program"),
    ("kworker/u8:0", [("process_one_work", "[kernel.kallsyms]")], "other tasks"),
]

SELF_TEST_SCRIPT = """redis-server [001] 
\tffffffff8175837e tcp_v4_rcv ([kernel.kallsyms])
\tffffffff81759d8c net_rx_action ([kernel.kallsyms])

swapper [000] 
\tffffffff82242055 pvm_safe_halt_hc ([kernel.kallsyms])
\tffffffff813d0ab4 do_idle ([kernel.kallsyms])

nginx [001] 
\t          10afa8 ngx_http_core_content_phase+0x12 (/usr/sbin/nginx)
"""


def self_test():
    bad = 0
    comms = {"redis-benchmark", "redis-server", "nginx", "swapper"}
    for comm, frames, want in SELF_TEST:
        got = classify(comm, frames, comms)
        if got != want:
            print(f"self-test: {comm} {[f[0] for f in frames]}: {got!r}, expected {want!r}")
            bad += 1
    parsed = parse(SELF_TEST_SCRIPT)
    want = [("redis-server", 1, "softirq: kernel TCP/IP"), ("swapper", 0, "idle"), ("nginx", 1, "user: program")]
    got = [(c, cpu, classify(c, f, comms)) for c, cpu, f in parsed]
    if got != want:
        print(f"self-test: parse gave {got}, expected {want}")
        bad += 1
    if parsed and parsed[2][2] != [("ngx_http_core_content_phase", "/usr/sbin/nginx")]:
        print(f"self-test: frame parse gave {parsed[2][2]}")
        bad += 1
    pr = per_request({1: collections.Counter({"idle": 999})}, 999, 4)
    if abs(pr[1]["idle"] - 250000.0) > 1e-6:
        print(f"self-test: per_request gave {pr}")
        bad += 1
    print(f"perf_breakdown self-test: {len(SELF_TEST) + 3 - bad} passed, {bad} failed")
    return 1 if bad else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("data", nargs="?")
    ap.add_argument("--requests", type=float, default=1.0)
    ap.add_argument("--freq", type=float, default=999.0)
    ap.add_argument("--comms", default="", help="comma-separated process names of the workload (else every task)")
    ap.add_argument("--self-test", action="store_true")
    a = ap.parse_args()
    if a.self_test:
        sys.exit(self_test())
    if not a.data:
        ap.error("a perf.data file, or --self-test")
    comms = set(a.comms.split(",")) if a.comms else None
    pr = per_request(breakdown(a.data, comms), a.freq, a.requests)
    cpus = sorted(pr)
    print("| category | " + " | ".join(f"CPU {c} us/req" for c in cpus) + " |")
    print("|---|" + "---|" * len(cpus))
    for k in CATEGORIES:
        if any(pr[c].get(k) for c in cpus):
            print(f"| {k} | " + " | ".join(f"{pr[c].get(k, 0):.2f}" for c in cpus) + " |")


if __name__ == "__main__":
    main()
