#!/usr/bin/env python3
"""Where a webhook's time goes: callrelay under wrk load, profiled (run through bench/profile.sh).

Starts a mosquitto (set_tcp_nodelay true by default), a QoS 1 subscriber and callrelay, drives
wrk -t2 -cC for the whole window, and meanwhile records, after a warm-up:

1. per-thread CPU and state (R running, S sleeping, D disk wait) of every callrelay thread, by
   sampling /proc/PID/task/*/stat every 2 ms (no overhead inside callrelay);
2. `perf record -a` (cpu-clock, no call graph): which process/thread uses the 2 cores;
3. `perf record --call-graph dwarf -p PID` on callrelay, classified into pipeline stages by the
   innermost recognised frame (bench/profile.py `STAGES`);
4. /metrics before and after: stored events, commits and commit duration -> batch size.

All three run over the same window.

Writes everything under --out (default /tmp/callrelay-profile) and prints a markdown summary.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import signal
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

# Innermost matching frame wins (frames are scanned from the leaf up). Order matters only within one
# frame. Patterns are matched against demangled symbol names and DSO names.
STAGES = [
    ("fsync (kernel, outbox)", re.compile(r"fdatasync|fsync|ext4_sync_file|jbd2|blkdev_issue_flush|file_write_and_wait")),
    ("SQLite (insert/commit/fetch/mark)", re.compile(r"sqlite3|libsqlite3|SQLiteStatement|SQLiteDatabase")),
    ("outbox queue logic (Swift)", re.compile(r"SQLiteOutbox|OutboxWebhookStore|OutboxDeliveryStore|OutboxEvent|OutboxRecord")),
    ("JSON parse", re.compile(r"JSONParser|JSONValue\.parse|JSONValue\b.*parse")),
    ("normalize + payload write", re.compile(r"PiopiyNormalizer|NormalizedEvent|JSONWriter|serialized|FieldConversion|EventID|Timestamp|FNV")),
    ("publish (libmosquitto + pump)", re.compile(r"mosquitto|Mosquitto|DeliveryPump|MosquittoTransport")),
    ("HTTP handler (routing, answer)", re.compile(r"WebhookHTTPHandler|IngestMetrics|RequestTracker|TokenCheck|acceptedBody")),
    ("NIO HTTP codec + channel", re.compile(r"NIOHTTP1|HTTPDecoder|HTTPServerPipeline|HTTPResponseEncoder|ByteToMessage|llhttp|c_nio_llhttp")),
    ("NIO event loop + sockets", re.compile(r"NIOPosix|NIOCore|SelectableEventLoop|epoll|Selector|NIO\w*Channel|EventLoop")),
    ("dispatch queue plumbing", re.compile(r"libdispatch|_dispatch|dispatch_")),
    ("locks / futex", re.compile(r"futex|pthread_mutex|Mutex|_os_unfair|lll_lock")),
    ("network syscalls (kernel)", re.compile(r"tcp_|inet_|sock_|__sys_sendto|__sys_recvfrom|ip_|skb|__x64_sys_write|__x64_sys_read|sys_write|sys_read")),
]


def sample_threads(pid: int, seconds: float, interval: float, result: dict) -> None:
    """Per-thread state histogram and CPU ticks over the window."""
    states: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    names: dict[str, str] = {}
    ticks0: dict[str, int] = {}
    ticks1: dict[str, int] = {}
    end = time.monotonic() + seconds
    first = True
    while time.monotonic() < end:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            break
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            name = stat[stat.index("(") + 1 : stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2 :].split()
            names[tid] = name
            states[tid][fields[0]] += 1
            t = int(fields[11]) + int(fields[12])
            if first or tid not in ticks0:
                ticks0[tid] = t
            ticks1[tid] = t
        first = False
        time.sleep(interval)
    result.update(states=states, names=names, ticks0=ticks0, ticks1=ticks1, seconds=seconds)


def classify(script_text: str) -> tuple[collections.Counter, collections.Counter, int]:
    """perf script (demangled) -> samples per (thread group, stage)."""
    per_stage: collections.Counter = collections.Counter()
    per_thread_stage: collections.Counter = collections.Counter()
    total = 0
    for block in script_text.split("\n\n"):
        lines = [l for l in block.splitlines() if l.strip()]
        if not lines:
            continue
        header = lines[0]
        comm = header.strip().split()[0] if header.strip() else "?"
        frames = lines[1:]
        total += 1
        stage = None
        for fr in frames:  # leaf first
            for name, pat in STAGES:
                if pat.search(fr):
                    stage = name
                    break
            if stage:
                break
        if stage is None:
            joined = " ".join(frames)
            if re.search(r"swift_retain|swift_release|swift_allocObject|malloc|free|swift_bridgeObject", joined):
                stage = "Swift runtime (retain/release/alloc), unattributed"
            else:
                stage = "other"
        thread = thread_group(comm)
        per_stage[stage] += 1
        per_thread_stage[(thread, stage)] += 1
    return per_stage, per_thread_stage, total


def outbox_breakdown(script_text: str) -> tuple[collections.Counter, int]:
    """The outbox queue thread's samples by what SQLite (or the pump riding on that queue) is doing."""
    c: collections.Counter = collections.Counter()
    total = 0
    for block in script_text.split("\n\n"):
        lines = block.strip().splitlines()
        if not lines or thread_group(lines[0].split()[0]) != "outbox queue (dispatch)":
            continue
        total += 1
        st = "\n".join(lines[1:])
        if re.search(r"[Ww]alCheckpoint", st):
            k = "WAL checkpoint (copy pages to the db file + its fsync)"
        elif re.search(r"fdatasync|unixSync|fsync", st):
            k = "fsync at commit (kernel)"
        elif "sqlite3WalFrames" in st:
            k = "writing WAL frames at commit (pwrite)"
        elif "mosquitto_publish" in st or "publishFetched" in st:
            k = "DeliveryPump.publishFetched -> mosquitto_publish (runs on the outbox queue)"
        elif "fetchPending" in st:
            k = "fetchPending SELECT (pump refill)"
        elif "spaceProblem" in st or "admissionRefusal" in st or "statvfs" in st:
            k = "space checks (PRAGMA page_count/freelist_count, statvfs; every quarter reserve)"
        elif "sqlite3" in st:
            k = "statements: INSERT dedupe + event, the watermark row"
        else:
            k = "other (Swift, dispatch, locks, completions)"
        c[k] += 1
    return c, total


def thread_group(comm: str) -> str:
    if comm.startswith("NIO-"):
        return "NIO event loops"
    if "overcommit" in comm or comm.startswith("callrelay.outbo"):
        return "outbox queue (dispatch)"
    if "default-qos" in comm or "mosq" in comm.lower():
        return "MQTT network thread"
    return comm


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", required=True)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--warmup", type=float, default=4)
    ap.add_argument("--window", type=float, default=10, help="seconds profiled")
    ap.add_argument("--stock-broker", action="store_true")
    ap.add_argument("--frequency", type=int, default=499)
    ap.add_argument("--out", default="/tmp/callrelay-profile")
    ap.add_argument("--no-dwarf", action="store_true", help="skip the call-graph recording (the expensive part)")
    opts = ap.parse_args()
    os.makedirs(opts.out, exist_ok=True)
    os.chmod(opts.out, 0o777)

    class O:  # the subset of bench options load helpers use
        keep = True

    mport, hport = bench.free_port(), bench.free_port()
    broker = bench.start_broker(opts.out, mport, not opts.stock_broker)
    sub = bench.Subscriber(opts.out, mport, "profile")
    relay = bench.CallRelay(opts.binary)
    for f in ("outbox.sqlite3", "outbox.sqlite3-wal", "outbox.sqlite3-shm"):
        try:
            os.remove(os.path.join(opts.out, f))
        except OSError:
            pass
    relay.start(opts.out, hport, mport)
    bench.wait_ready(hport, time.monotonic(), relay.proc)
    pid = relay.proc.pid
    total = opts.warmup + opts.window + 3
    wrk = bench.spawn(["wrk", "-t2", f"-c{opts.connections}", f"-d{total:g}s", "--timeout", "5s", "-s", bench.LUA,
                       f"http://127.0.0.1:{hport}/webhooks/piopiy/live"], stdout=subprocess.PIPE, text=True)
    time.sleep(opts.warmup)

    def metric(text, name):
        m = re.search(rf"^{name} ([\d.e+-]+)", text, re.M)
        return float(m[1]) if m else 0.0

    m0 = relay.metrics()
    t0 = time.monotonic()
    threads: dict = {}
    sampler = threading.Thread(target=sample_threads, args=(pid, opts.window, 0.002, threads))
    sampler.start()
    sysdata = os.path.join(opts.out, "perf-system.data")
    dwarf_data = os.path.join(opts.out, "perf-callrelay.data")
    recorders = [subprocess.Popen(["perf", "record", "-q", "-a", "-e", "cpu-clock", "-F", "999", "-o", sysdata, "--", "sleep", str(opts.window)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    if not opts.no_dwarf:  # same window; its overhead slows callrelay a little, evenly across threads
        recorders.append(subprocess.Popen(
            ["perf", "record", "-q", "-e", "cpu-clock", "-F", str(opts.frequency), "--call-graph", "dwarf,16384",
             "-p", str(pid), "-o", dwarf_data, "--", "sleep", str(opts.window)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    for r in recorders:
        r.wait()
    sampler.join()
    m1 = relay.metrics()
    elapsed = time.monotonic() - t0
    out = wrk.communicate()[0]
    relay.stop()
    sub.close()
    bench.stop(broker)

    lines = [f"## callrelay profile: wrk -t2 -c{opts.connections}, broker {'stock' if opts.stock_broker else 'set_tcp_nodelay true'}", ""]
    mres = re.search(r"REQUESTS (\d+) NON2XX (\d+) P50_MS ([\d.]+) P99_MS ([\d.]+) RPS ([\d.]+)", out or "")
    if mres:
        lines.append(f"wrk over the whole run (profilers attached part of the time): {float(mres[5]):,.0f} req/s, "
                     f"p50 {mres[3]} ms, p99 {mres[4]} ms")
    stored = metric(m1, "callrelay_outbox_stored_total") - metric(m0, "callrelay_outbox_stored_total")
    commits = metric(m1, "callrelay_outbox_commit_duration_seconds_count") - metric(m0, "callrelay_outbox_commit_duration_seconds_count")
    csum = metric(m1, "callrelay_outbox_commit_duration_seconds_sum") - metric(m0, "callrelay_outbox_commit_duration_seconds_sum")
    acked = metric(m1, "callrelay_mqtt_acknowledged_total") - metric(m0, "callrelay_mqtt_acknowledged_total")
    if commits:
        lines.append(f"outbox in the {elapsed:.1f} s window: {stored / elapsed:,.0f} stored/s, {acked / elapsed:,.0f} acked/s, "
                     f"{commits / elapsed:,.0f} commits/s, {stored / commits:.1f} events per commit, "
                     f"mean commit {csum / commits * 1e6:,.0f} µs, commit busy {csum / elapsed * 100:.0f}% of the outbox thread")
    lines.append("")
    lines.append("### callrelay threads (sampled from /proc every 2 ms)")
    lines.append("")
    lines.append("| thread | CPU % of one core | running (R) % | disk wait (D) % | sleeping (S) % |")
    lines.append("|---|---|---|---|---|")
    for tid, st in sorted(threads.get("states", {}).items(), key=lambda kv: -(threads["ticks1"][kv[0]] - threads["ticks0"][kv[0]])):
        n = sum(st.values())
        cpu = (threads["ticks1"][tid] - threads["ticks0"][tid]) / bench.CLK_TCK / threads["seconds"] * 100
        if cpu < 0.5 and st.get("D", 0) == 0:
            continue
        lines.append(f"| {threads['names'][tid]} ({tid}) | {cpu:.0f} | {st.get('R', 0) / n * 100:.0f} | {st.get('D', 0) / n * 100:.0f} | "
                     f"{st.get('S', 0) / n * 100:.0f} |")
    lines.append("")
    rep = subprocess.run(["perf", "report", "-i", sysdata, "--stdio", "--sort", "comm", "-q"], capture_output=True, text=True).stdout
    lines.append("### the 2 cores (perf record -a, cpu-clock): share of all samples by thread name")
    lines.append("")
    lines.append("| thread (comm) | % of 2 cores |")
    lines.append("|---|---|")
    for l in rep.splitlines():
        parts = l.strip().split(None, 1)
        if len(parts) == 2 and parts[0].endswith("%") and float(parts[0][:-1]) >= 0.3:
            lines.append(f"| {parts[1].strip()} | {parts[0]} |")
    lines.append("")
    lines.append("(swapper = idle; `-qos.overcommit` = callrelay's outbox dispatch queue thread; `oot.default-qos` = the libmosquitto network "
                 "thread, which inherits the name of the thread that created it)")
    lines.append("")
    if not opts.no_dwarf and os.path.exists(dwarf_data):
        script = subprocess.run(f"perf script -i {dwarf_data} -F comm,tid,ip,sym,dso 2>/dev/null | swift demangle --simplified",
                                shell=True, capture_output=True, text=True).stdout
        with open(os.path.join(opts.out, "perf-callrelay.script"), "w") as f:
            f.write(script)
        per_stage, per_thread_stage, total = classify(script)
        lines.append(f"### callrelay on-CPU time by pipeline stage (perf --call-graph dwarf, {total} samples at {opts.frequency} Hz)")
        lines.append("")
        lines.append("| stage (innermost recognised frame) | % of callrelay CPU |")
        lines.append("|---|---|")
        for stage, n in per_stage.most_common():
            lines.append(f"| {stage} | {n / total * 100:.1f} |")
        lines.append("")
        ob, obtotal = outbox_breakdown(script)
        if obtotal:
            lines.append(f"### the outbox queue thread ({obtotal} samples)")
            lines.append("")
            lines.append("| what | % of the outbox thread's CPU |")
            lines.append("|---|---|")
            for k, n in ob.most_common():
                lines.append(f"| {k} | {n / obtotal * 100:.1f} |")
            lines.append("")
        lines.append("| thread | stage | % of callrelay CPU |")
        lines.append("|---|---|---|")
        for (thread, stage), n in per_thread_stage.most_common():
            if n / total >= 0.01:
                lines.append(f"| {thread} | {stage} | {n / total * 100:.1f} |")
        lines.append("")
    report = "\n".join(lines)
    with open(os.path.join(opts.out, "summary.md"), "w") as f:
        f.write(report + "\n")
    print(report)
    return 0


if __name__ == "__main__":
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: (bench.stop_all(), sys.exit(130)))
    try:
        sys.exit(main())
    finally:
        bench.stop_all()
