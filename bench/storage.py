#!/usr/bin/env python3
"""callrelay storage benchmark: what the SQLite outbox costs in disk space, bytes written and
time, with the broker down and while a backlog drains.

Run it through bench/storage.sh (installs what is missing, builds the release binary). Processes
and helpers come from bench/bench.py (imported, not changed); everything runs on free loopback
ports and is stopped by PID. "Broker down" = mqtt.port points at a free port where nothing
listens; later a mosquitto (set_tcp_nodelay true) is started ON THAT PORT and the agent
(reconnect_min_ms 100, reconnect_max_ms 1000) reconnects to it. Each phase: fresh temp dir under
BENCH_TMP (a real disk) and a fresh agent, deleted at the end of the phase.

  1. footprint: storage.max_bytes = --footprint-cap-mib, wrk -t2 -c64 (live-events.lua) for
     --footprint-seconds. A sampler thread stats outbox.sqlite3 + -wal + -shm every 20 ms (missing =
     0); another polls /metrics every 50 ms for the first callrelay_outbox_write_failures_total > 0
     (time to first refusal and the footprint at that moment). Then: footprint 5 s after the load;
     mosquitto on the port, wait for callrelay_outbox_pending_events == 0, 5 s more, footprint.
  2. write amplification: default cap, wrk c64 for --write-seconds. /proc/PID/io write_bytes
     before the load and 2 s after it -> bytes per stored webhook. File sizes at the end and 5 s
     later. Drain: agent SIGSTOPped, mosquitto + a QoS 1 subscriber, SIGCONT, time to pending == 0;
     write_bytes of the drain (until pending == 0, plus 2 s) / delivered = delivery-mark bytes per
     event; end to end = all bytes written from before the load to 5 s idle after the drain / stored.
  3. backlog: storage.max_bytes = --backlog-cap-mib (the default 1 GiB cap cannot hold 1M events
     on every design). c64 10 s on the empty outbox; fill to --backlog-n stored (wrk fixed-count
     runs); c64 10 s again (ratio to empty); VmRSS at N pending; `callrelay status` wall time x3;
     SIGTERM (time to exit), restart, spawn -> first 200 on /readyz, RSS after ready; mosquitto on
     the port (no subscriber: the broker acknowledges and drops), time to pending == 0, peak RSS.

Rates depend on the machine and on foreign load (per phase: load average, and the cores used by
this run vs the rest of the machine, from /proc/stat and getrusage); bytes and sizes do not. Nothing is asserted. Output: one markdown table per phase, printed and
written to bench/results/<date>-storage[-TAG].md, raw JSON next to it (.json).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True  # no bench/__pycache__ in the work tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as B  # noqa: E402

log = lambda msg: print(f"[storage {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)
MiB = 1 << 20
FILES = ("db", "wal", "shm")


class Agent(B.CallRelay):
    """bench.py's CallRelay with the config this benchmark needs (cap, reconnect, warning logs)."""

    def start(self, workdir, http_port, mqtt_port, max_bytes=None):
        self.http_port, self.workdir = http_port, workdir
        self.db = os.path.join(workdir, "outbox.sqlite3")
        self.conf = os.path.join(workdir, "callrelay.toml")
        with open(self.conf, "w") as f:
            f.write(f'[http]\nlisten = "127.0.0.1:{http_port}"\n\n'
                    f'[mqtt]\nhost = "127.0.0.1"\nport = {mqtt_port}\nclient_id = "callrelay-bench"\n'
                    "reconnect_min_ms = 100\nreconnect_max_ms = 1000\n\n"
                    f'[storage]\npath = "{self.db}"\n' + (f"max_bytes = {max_bytes}\n" if max_bytes else "")
                    + '\n[log]\nlevel = "warning"\n')
        self.log = open(os.path.join(workdir, "callrelay.log"), "ab")
        t0 = time.monotonic()
        self.proc = B.spawn([self.binary, "run", "--config", self.conf], stdout=self.log, stderr=subprocess.STDOUT)
        return round(B.wait_ready(http_port, t0, self.proc, timeout=600), 1)

    def gauge(self, name) -> int:
        m = re.search(rf"^{name} (\d+)", self.metrics(), re.M)
        return int(m[1]) if m else 0

    def pending(self) -> int:
        return self.gauge("callrelay_outbox_pending_events")

    def write_bytes(self) -> int:
        with open(f"/proc/{self.proc.pid}/io") as f:
            return int(re.search(r"^write_bytes: (\d+)", f.read(), re.M)[1])

    def sizes(self) -> dict:
        out = {}
        for k, suffix in zip(FILES, ("", "-wal", "-shm")):
            try:
                out[k] = os.stat(self.db + suffix).st_size
            except FileNotFoundError:
                out[k] = 0
        out["total"] = sum(out.values())
        return out

    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/webhooks/piopiy/live"


class Sampler:
    """Stats the outbox files every 20 ms (peak per file and of the sum); optionally polls /metrics
    every 50 ms for the first write failure (t and footprint then, from t0 = start())."""

    def __init__(self, agent: Agent, watch_refusal=False):
        self.agent, self.watch = agent, watch_refusal
        self.peak = {k: 0 for k in (*FILES, "total")}
        self.first_refusal_s = self.at_refusal = None
        self.done = threading.Event()

    def start(self):
        self.t0 = time.monotonic()
        self.threads = [threading.Thread(target=self._stat, daemon=True)]
        if self.watch:
            self.threads.append(threading.Thread(target=self._metrics, daemon=True))
        for t in self.threads:
            t.start()
        return self

    def reset(self):
        self.peak = {k: 0 for k in self.peak}

    def _stat(self):
        while not self.done.wait(0.02):
            s = self.agent.sizes()
            for k in self.peak:
                self.peak[k] = max(self.peak[k], s[k])

    def _metrics(self):
        while self.first_refusal_s is None and not self.done.wait(0.05):
            try:
                if self.agent.gauge("callrelay_outbox_write_failures_total") > 0:
                    self.first_refusal_s = round(time.monotonic() - self.t0, 2)
                    self.at_refusal = self.agent.sizes()
            except OSError:
                pass

    def stop(self):
        self.done.set()
        for t in self.threads:
            t.join()


def wait_pending_zero(agent: Agent, timeout: float, sample=None) -> float | None:
    """Seconds until callrelay_outbox_pending_events == 0 (None on timeout); sample() every 50 ms."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if sample:
            sample()
        if agent.pending() == 0:
            return time.monotonic() - t0
        time.sleep(0.05)
    log(f"  pending still {agent.pending()} after {timeout:.0f} s: giving up")
    return None


def mib(b):
    return round(b / MiB, 1)


def phase_dir(opts, name):
    return B.new_workdir(opts.tmp, f"storage-{name}")


def finish(agent, wd, opts, *others):
    agent.stop()
    for p in others:
        B.stop(p)
    if not opts.keep:
        shutil.rmtree(wd, ignore_errors=True)


def footprint(opts) -> dict:
    wd, hport, mport = phase_dir(opts, "footprint"), B.free_port(), B.free_port()
    cap = opts.footprint_cap_mib * MiB
    agent, broker, r = Agent(opts.binary), None, {"cap_bytes": cap, "seconds": opts.footprint_seconds}
    try:
        agent.start(wd, hport, mport, max_bytes=cap)
        s = Sampler(agent, watch_refusal=True).start()
        w = B.run_wrk(agent.url(), 64, opts.footprint_seconds)
        load_peak = dict(s.peak)
        r.update(rps=w.rps, answered=w.requests - w.non2xx, non2xx=w.non2xx, socket_errors=w.socket_errors,
                 stored=agent.stored(), peak=load_peak, first_refusal_s=s.first_refusal_s, at_refusal=s.at_refusal)
        log(f"  footprint: {r['stored']} stored, {w.non2xx} refused (first after {s.first_refusal_s} s), "
            f"peak {mib(load_peak['total'])} MiB (db {mib(load_peak['db'])} wal {mib(load_peak['wal'])})")
        time.sleep(5)
        r["after_5s"] = agent.sizes()
        s.reset()
        broker = B.start_broker(wd, mport, nodelay=True)
        dt = wait_pending_zero(agent, opts.drain_timeout)
        r["drain_s"] = None if dt is None else round(dt, 2)
        time.sleep(5)
        r["after_drain"], r["peak_during_drain"] = agent.sizes(), dict(s.peak)
        s.stop()
        log(f"  footprint: 5 s after load {mib(r['after_5s']['total'])} MiB, after drain {mib(r['after_drain']['total'])} MiB")
    finally:
        finish(agent, wd, opts, broker)
    return r


def write_amp(opts) -> dict:
    wd, hport, mport = phase_dir(opts, "write"), B.free_port(), B.free_port()
    agent, broker, sub, r = Agent(opts.binary), None, None, {"seconds": opts.write_seconds}
    try:
        agent.start(wd, hport, mport)
        wb0, st0 = agent.write_bytes(), agent.stored()
        w = B.run_wrk(agent.url(), 64, opts.write_seconds)
        t_end = time.monotonic()
        r["at_end"] = agent.sizes()
        time.sleep(2)
        wb1, stored = agent.write_bytes(), agent.stored() - st0
        r.update(rps=w.rps, p99_ms=w.p99_ms, non2xx=w.non2xx, stored=stored, ingest_bytes=wb1 - wb0,
                 ingest_per_webhook=round((wb1 - wb0) / max(stored, 1)))
        r["where"] = where_bytes_go(agent, stored)
        time.sleep(max(0.0, 5 - (time.monotonic() - t_end)))
        r["after_5s"] = agent.sizes()
        log(f"  write: {stored} stored at {w.rps:.0f}/s, {r['ingest_per_webhook']} B written each; "
            f"db {mib(r['after_5s']['db'])} wal {mib(r['after_5s']['wal'])} MiB")
        agent.signal_all(signal.SIGSTOP)  # so it cannot publish before the subscriber is subscribed
        broker = B.start_broker(wd, mport, nodelay=True)
        sub = B.Subscriber(wd, mport, "write")
        wb2 = agent.write_bytes()
        t0 = time.monotonic()
        agent.signal_all(signal.SIGCONT)
        dt = wait_pending_zero(agent, opts.drain_timeout)
        time.sleep(2)
        wb3, delivered = agent.write_bytes(), sub.count()
        r.update(drain_s=None if dt is None else round(dt, 2), delivered=delivered, drain_bytes=wb3 - wb2,
                 drain_rps=round(delivered / dt) if dt else None, mark_per_event=round((wb3 - wb2) / max(delivered, 1)))
        r["after_drain"] = agent.sizes()
        time.sleep(5)
        wb4 = agent.write_bytes()
        r.update(idle_bytes=wb4 - wb3, end_to_end_bytes=wb4 - wb0, end_to_end_per_webhook=round((wb4 - wb0) / max(stored, 1)),
                 after_drain_idle=agent.sizes(), total_s=round(time.monotonic() - t0, 1))
        log(f"  write: drained {delivered} in {r['drain_s']} s ({r['drain_rps']}/s), {r['mark_per_event']} B per mark, "
            f"end to end {r['end_to_end_per_webhook']} B per webhook")
    finally:
        if sub:
            sub.close()
        finish(agent, wd, opts, broker)
    return r


def metric(text: str, name: str) -> float | None:
    m = re.search(rf"^{name}(?:\{{[^}}]*\}})? ([0-9.e+]+)$", text, re.M)
    return float(m[1]) if m else None


def where_bytes_go(agent: Agent, stored: int) -> dict:
    """Per-table pages and bytes (dbstat, read-only connection) and WAL frames per commit."""
    import sqlite3

    out = {"tables": {}}
    try:
        with sqlite3.connect(f"file:{agent.db}?mode=ro", uri=True) as c:
            for name, pages, used in c.execute(
                    "SELECT name, count(*), sum(pgsize - unused) FROM dbstat GROUP BY name ORDER BY count(*) DESC"):
                out["tables"][name] = {"pages": pages, "bytes_per_webhook": round(pages * 4096 / max(stored, 1)),
                                       "fill": round(used / max(pages * 4096, 1), 2)}
    except Exception as e:  # noqa: BLE001 - a report, not a test
        out["error"] = str(e)
    text = agent.metrics()
    frames, commits = metric(text, "callrelay_outbox_wal_frames_total"), metric(text, "callrelay_outbox_commit_duration_seconds_count")
    if frames is not None and commits:
        out.update(wal_frames=int(frames), commits=int(commits), frames_per_commit=round(frames / commits, 1),
                   webhooks_per_commit=round(stored / commits, 1), wal_bytes_per_webhook=round(frames * 4120 / max(stored, 1)))
    return out


def backlog(opts) -> dict:
    wd, hport, mport = phase_dir(opts, "backlog"), B.free_port(), B.free_port()
    n, cap = opts.backlog_n, opts.backlog_cap_mib * MiB
    agent, broker, r = Agent(opts.binary), None, {"n": n, "cap_bytes": cap}
    try:
        agent.start(wd, hport, mport, max_bytes=cap)
        w = B.run_wrk(agent.url(), 64, 10)
        r["empty"] = {"rps": w.rps, "p50_ms": w.p50_ms, "p99_ms": w.p99_ms, "non2xx": w.non2xx}
        log(f"  backlog: empty outbox c64 {w.rps:.0f}/s p99 {w.p99_ms:.2f} ms; filling to {n}")
        t0 = time.monotonic()
        while (have := agent.stored()) < n:
            base = have
            f = B.run_wrk(agent.url(), 64, 0, fixed=n - have, count=lambda: agent.stored() - base)
            log(f"    {agent.stored()} stored ({f.rps:.0f}/s, {f.non2xx} refused)")
            if f.non2xx and agent.stored() == have:
                log("    no progress (refused): stopping the fill")
                break
        r["fill"] = {"s": round(time.monotonic() - t0, 1), "stored": agent.stored()}
        r["rss_kb_at_n"], r["sizes_at_n"] = agent.rss_kb("VmRSS"), agent.sizes()
        w = B.run_wrk(agent.url(), 64, 10)
        r["at_n"] = {"rps": w.rps, "p50_ms": w.p50_ms, "p99_ms": w.p99_ms, "non2xx": w.non2xx, "pending_before": r["fill"]["stored"]}
        r["ratio"] = round(w.rps / r["empty"]["rps"], 2) if r["empty"]["rps"] else None
        r["pending"] = agent.pending()
        log(f"  backlog: at {r['fill']['stored']} pending c64 {w.rps:.0f}/s p99 {w.p99_ms:.2f} ms (x{r['ratio']}), "
            f"RSS {r['rss_kb_at_n'] / 1024:.1f} MiB")
        times = []
        for _ in range(3):
            t = time.monotonic()
            out = subprocess.run([opts.binary, "status", "--config", agent.conf], capture_output=True, text=True, timeout=900)
            times.append(round((time.monotonic() - t) * 1000))
        r["status_ms"], r["status_out"] = times, out.stdout.strip().splitlines()[:6]
        log(f"  backlog: status {times} ms")
        t = time.monotonic()
        B.stop(agent.proc, timeout=600)
        r["stop_s"], r["sizes_after_stop"] = round(time.monotonic() - t, 2), agent.sizes()
        r["ready_ms"] = agent.start(wd, hport, mport, max_bytes=cap)
        r["rss_kb_after_ready"] = agent.rss_kb("VmRSS")
        r["pending_after_restart"] = agent.pending()
        log(f"  backlog: stop {r['stop_s']} s, restart ready in {r['ready_ms']} ms, RSS {r['rss_kb_after_ready'] / 1024:.1f} MiB")
        rss = [0]
        broker = B.start_broker(wd, mport, nodelay=True)
        dt = wait_pending_zero(agent, opts.drain_timeout, sample=lambda: rss.append(agent.rss_kb("VmRSS")))
        r.update(drain_s=None if dt is None else round(dt, 2), drain_rps=round(r["pending_after_restart"] / dt) if dt else None,
                 drain_rss_max_kb=max(rss), drain_hwm_kb=agent.rss_kb("VmHWM"), sizes_after_drain=agent.sizes())
        if dt is None:
            r["pending_left"] = agent.pending()
        log(f"  backlog: drained in {r['drain_s']} s ({r['drain_rps']}/s), peak RSS {r['drain_hwm_kb'] / 1024:.1f} MiB")
    finally:
        finish(agent, wd, opts, broker)
    return r


def fmt(v, unit="", digits=0):
    return "–" if v is None else f"{v:,.{digits}f}{unit}"


def sizes_txt(s):
    return f"db {mib(s['db'])} / wal {mib(s['wal'])} / shm {mib(s['shm'])} = **{mib(s['total'])} MiB**" if s else "–"


def report(res: dict) -> str:
    L = []
    if (f := res.get("footprint")) and "footprint_error" not in res:
        cap = f["cap_bytes"]
        L += [f"### 1. Footprint: storage.max_bytes = {mib(cap):g} MiB, broker down, wrk -t2 -c64 for {f['seconds']:g} s", "",
              "| what | value |", "|---|---|",
              f"| peak footprint (db + wal + shm, 20 ms samples) | **{mib(f['peak']['total'])} MiB** (×{f['peak']['total'] / cap:.2f} the cap) |",
              f"| peak of each file | db {mib(f['peak']['db'])} MiB, wal {mib(f['peak']['wal'])} MiB, shm {mib(f['peak']['shm'])} MiB |",
              f"| stored (callrelay_outbox_stored_total) | {f['stored']:,} |",
              f"| refused (wrk non-2xx) / answered 2xx | {f['non2xx']:,} / {f['answered']:,} ({f['rps']:,.0f} req/s) |",
              f"| first refusal (write_failures_total > 0, 50 ms polls) | " + (f"after {f['first_refusal_s']} s, footprint then {sizes_txt(f['at_refusal'])}" if f["first_refusal_s"] is not None else "none") + " |",
              f"| footprint 5 s after the load | {sizes_txt(f['after_5s'])} |",
              f"| footprint after the drain (pending 0 after {fmt(f['drain_s'], ' s', 1)}, + 5 s) | {sizes_txt(f['after_drain'])} |",
              f"| peak footprint during the drain | {mib(f['peak_during_drain']['total'])} MiB |", ""]
    if (w := res.get("write")) and "write_error" not in res:
        L += [f"### 2. Write amplification: default cap, broker down, wrk c64 for {w['seconds']:g} s, then drain", "",
              "| what | value |", "|---|---|",
              f"| stored | {w['stored']:,} ({w['rps']:,.0f} req/s, p99 {w['p99_ms']:.2f} ms, {w['non2xx']:,} refused) |",
              f"| written while ingesting (/proc/PID/io write_bytes, to 2 s after) | {w['ingest_bytes'] / 1e6:,.0f} MB = **{w['ingest_per_webhook'] / 1000:.2f} KB per stored webhook** |",
              f"| files at the end of the load | {sizes_txt(w['at_end'])} |",
              f"| files 5 s after | {sizes_txt(w['after_5s'])} |",
              f"| drain (SIGCONT to pending 0; nodelay broker, QoS 1 subscriber) | {w['delivered']:,} delivered in {fmt(w['drain_s'], ' s', 1)} = **{fmt(w['drain_rps'], ' msg/s')}** |",
              f"| written while draining (to 2 s after pending 0) | {w['drain_bytes'] / 1e6:,.0f} MB = **{w['mark_per_event'] / 1000:.2f} KB per delivery mark** |",
              f"| end to end (ingest + drain + 5 s idle: {w['idle_bytes'] / 1e6:,.1f} MB) | {w['end_to_end_bytes'] / 1e6:,.0f} MB = **{w['end_to_end_per_webhook'] / 1000:.2f} KB per stored webhook** |",
              f"| files after the drain + 5 s | {sizes_txt(w['after_drain_idle'])} |", ""]
        wh = w.get("where", {})
        if wh.get("frames_per_commit") is not None:
            L += [f"WAL while ingesting: {wh['wal_frames']:,} frames in {wh['commits']:,} commits = {wh['frames_per_commit']} pages per commit "
                  f"for {wh['webhooks_per_commit']} webhooks = {wh['wal_bytes_per_webhook']:,} B of WAL per webhook.", ""]
        if wh.get("tables"):
            L += ["| table or index (dbstat, end of the load) | pages | bytes per webhook | fill |", "|---|---|---|---|"]
            L += [f"| {n} | {t['pages']:,} | {t['bytes_per_webhook']:,} | {t['fill']:.0%} |" for n, t in wh["tables"].items()]
            L += [""]
    if (b := res.get("backlog")) and "backlog_error" not in res:
        e, a = b["empty"], b.get("at_n", {})
        st = b.get("status_ms", [])
        L += [f"### 3. Backlog: {b['n']:,} pending (storage.max_bytes = {mib(b['cap_bytes']):g} MiB), broker down", "",
              "| what | value |", "|---|---|",
              f"| ingest, empty outbox (c64, 10 s) | {e['rps']:,.0f} req/s, p99 {e['p99_ms']:.2f} ms |",
              f"| fill to N (wrk fixed count, c64) | {b['fill']['stored']:,} stored in {b['fill']['s']} s |",
              f"| ingest at N pending (c64, 10 s) | {a.get('rps', 0):,.0f} req/s (×{b.get('ratio')} of empty), p99 {a.get('p99_ms', 0):.2f} ms, {a.get('non2xx', 0):,} refused |",
              f"| RSS (VmRSS) at N pending | {b['rss_kb_at_n'] / 1024:.1f} MiB |",
              f"| files at N pending | {sizes_txt(b['sizes_at_n'])} |",
              f"| `callrelay status` wall time (3 runs, agent up, {b.get('pending', 0):,} pending) | median {statistics.median(st) if st else 0:,.0f} ms, max {max(st, default=0):,} ms |",
              f"| SIGTERM to exit | {b.get('stop_s')} s (files after: {sizes_txt(b.get('sizes_after_stop'))}) |",
              f"| restart: spawn to first 200 on /readyz | **{fmt(b.get('ready_ms'), ' ms')}** |",
              f"| RSS right after ready | {b.get('rss_kb_after_ready', 0) / 1024:.1f} MiB |",
              f"| drain (broker start to pending 0, no subscriber) | {b.get('pending_after_restart', 0):,} in {fmt(b.get('drain_s'), ' s', 1)} = **{fmt(b.get('drain_rps'), ' msg/s')}** |",
              f"| RSS during the drain: max VmRSS (50 ms samples) / VmHWM | {b.get('drain_rss_max_kb', 0) / 1024:.1f} / {b.get('drain_hwm_kb', 0) / 1024:.1f} MiB |",
              f"| files after the drain | {sizes_txt(b.get('sizes_after_drain'))} |", ""]
    return "\n".join(L)


def our_ticks() -> int:
    r = B.resource.getrusage(B.resource.RUSAGE_SELF)
    return B.children_rusage_ticks() + int((r.ru_utime + r.ru_stime) * B.CLK_TCK)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", required=True)
    ap.add_argument("--phases", default="footprint,write,backlog")
    ap.add_argument("--footprint-cap-mib", type=int, default=64)
    ap.add_argument("--footprint-seconds", type=float, default=30)
    ap.add_argument("--write-seconds", type=float, default=20)
    ap.add_argument("--backlog-n", type=int, default=1_000_000)
    ap.add_argument("--backlog-cap-mib", type=int, default=16384, help="storage.max_bytes in the backlog phase")
    ap.add_argument("--drain-timeout", type=float, default=900, help="give up waiting for pending == 0 after this many s")
    ap.add_argument("--quick", action="store_true", help="20 s footprint, 10 s write, 200,000 backlog")
    ap.add_argument("--tag", default="", help="results file: <date>-storage-TAG.md")
    ap.add_argument("--label", default="", help="what the binary is (e.g. a commit), for the header")
    ap.add_argument("--note", default="", help="free text for the results header (e.g. foreign load)")
    ap.add_argument("--tmp", default=os.environ.get("BENCH_TMP", "/tmp"))
    ap.add_argument("--results", default=os.path.join(B.ROOT, "bench", "results"))
    ap.add_argument("--keep", action="store_true", help="keep the temp dirs")
    opts = ap.parse_args()
    if opts.quick:
        opts.footprint_seconds, opts.write_seconds, opts.backlog_n = min(opts.footprint_seconds, 20), min(opts.write_seconds, 10), min(opts.backlog_n, 200_000)
    opts.binary = os.path.abspath(opts.binary)
    fstype = subprocess.run(["stat", "-f", "-c", "%T", opts.tmp], capture_output=True, text=True).stdout.strip()
    if fstype in ("tmpfs", "ramfs"):
        log(f"warning: {opts.tmp} is {fstype}: fsync is free there; set BENCH_TMP to a directory on a real disk")
    sh = lambda cmd: subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
    bdir = os.path.dirname(opts.binary)
    commit = sh(f"git -C {bdir} rev-parse --short HEAD 2>/dev/null")
    if commit and sh(f"git -C {bdir} status --porcelain --untracked-files=no 2>/dev/null"):
        commit += " (worktree has uncommitted changes)"
    meta = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "binary": opts.binary, "label": opts.label,
            "commit": commit or "unknown", "uptime_before": sh("uptime"), "nproc": os.cpu_count(), "tmp": f"{opts.tmp} ({fstype})",
            "disk_free_before": sh(f"df -h --output=avail {opts.tmp} | tail -1"), "sqlite": "system libsqlite3 " + sh("python3 -c 'import sqlite3; print(sqlite3.sqlite_version)'"),
            "mosquitto": sh(f"{B.MOSQUITTO} -h 2>&1 | head -1"), "note": opts.note,
            "options": {k: v for k, v in vars(opts).items() if k not in ("results",)}}
    res, started = {"meta": meta}, time.monotonic()
    phases = {"footprint": footprint, "write": write_amp, "backlog": backlog}
    try:
        for name in opts.phases.split(","):
            log(f"phase {name} (load: {open('/proc/loadavg').read().strip()})")
            t, busy0, ours0 = time.monotonic(), B.machine_ticks()[0], our_ticks()
            try:
                res[name] = phases[name](opts)
            except Exception as e:  # record what we have and go on with the next phase
                log(f"  phase {name} failed: {e!r}")
                res[f"{name}_error"] = repr(e)
            res.setdefault(name, {})["phase_s"] = round(time.monotonic() - t, 1)
            res[name]["load_after"] = open("/proc/loadavg").read().strip()
            # Every process of the phase has been reaped here: the rest of the machine's busy time is foreign.
            busy, ours = B.machine_ticks()[0] - busy0, our_ticks() - ours0
            res[name]["cores"] = {"ours": round(ours / B.CLK_TCK / res[name]["phase_s"], 2),
                                  "foreign": round(max(0, busy - ours) / B.CLK_TCK / res[name]["phase_s"], 2)}
            log(f"  phase {name}: {res[name]['phase_s']} s, cores used: {res[name]['cores']}")
    finally:
        B.stop_all()
    meta.update(runtime_s=round(time.monotonic() - started), uptime_after=sh("uptime"))
    try:
        body = report(res)
    except Exception as e:  # a failed phase leaves keys missing: the JSON still has everything
        body = f"(report incomplete: {e!r}; see the JSON)"
    print(body)
    os.makedirs(opts.results, exist_ok=True)
    base = os.path.join(opts.results, f"{datetime.date.today():%Y-%m-%d}-storage" + (f"-{opts.tag}" if opts.tag else ""))
    with open(base + ".md", "w") as f:
        f.write(f"# callrelay storage benchmark, {meta['date']}\n\n"
                f"Produced by `bench/storage.sh` / `bench/storage.py` (method: its docstring).\n\n"
                f"- binary: `{meta['binary']}`" + (f" ({opts.label})" if opts.label else "") + "\n"
                f"- commit: {meta['commit']}\n- date: {meta['date']}, runtime {meta['runtime_s']} s\n"
                f"- uptime before: `{meta['uptime_before']}`\n- uptime after: `{meta['uptime_after']}`\n"
                f"- {meta['nproc']} cores; outboxes in {meta['tmp']}; {meta['sqlite']}; {meta['mosquitto']}\n"
                + "".join(f"- {name}: {res[name].get('phase_s')} s, load after `{res[name].get('load_after')}`, average cores busy over the phase (idle waits included): "
                          f"{res[name]['cores']['ours']} ours (agent, wrk, brokers, this script), {res[name]['cores']['foreign']} foreign\n"
                          for name in phases if name in res)
                + (f"- note: {opts.note}\n" if opts.note else "")
                + "".join(f"- **phase {k[:-6]} failed**: {v}\n" for k, v in res.items() if k.endswith("_error"))
                + f"\nRaw figures: `{os.path.basename(base)}.json`.\n\n{body}\n")
    with open(base + ".json", "w") as f:
        json.dump(res, f, indent=1)
    log(f"wrote {os.path.relpath(base, B.ROOT)}.md and .json ({meta['runtime_s']} s)")
    return 0


if __name__ == "__main__":
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: (B.stop_all(), sys.exit(130)))
    sys.exit(main())
