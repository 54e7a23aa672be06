#!/usr/bin/env python3
"""Call state on vs off (issue 12): the same release binary, the same wrk load of whole calls
(bench/call-flows.lua: 4 webhooks per call, every webhook changes its call's state), a local
mosquitto with set_tcp_nodelay, a fresh outbox per run, the two settings alternated.

Per run: webhooks answered per second, p99, the agent's CPU per webhook, bytes it wrote to disk
per webhook (/proc/PID/io write_bytes), RSS at the end, and the MQTT messages it published.

    bench/callstate.py --binary .build-bench/release/callrelay [--reps 3] [--duration 10] [--connections 64]
"""
import argparse
import datetime
import os
import re
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as b  # noqa: E402  (the shared helpers: spawn, ports, mosquitto, CPU ticks)

LUA = os.path.join(b.ROOT, "bench", "call-flows.lua")


def io_write_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/io") as f:
        return int(re.search(r"^write_bytes: (\d+)", f.read(), re.M)[1])


def one_run(binary: str, calls: bool, with_broker: bool, opts) -> dict:
    work = b.new_workdir(opts.tmp, f"callstate-{'on' if calls else 'off'}")
    mqtt_port, http_port = b.free_port(), b.free_port()
    # Without a broker the run measures ingest alone: webhooks stored, nothing delivered.
    broker = b.start_broker(work, mqtt_port, nodelay=True) if with_broker else None
    conf = os.path.join(work, "callrelay.toml")
    with open(conf, "w") as f:
        f.write(
            f'[http]\nlisten = "127.0.0.1:{http_port}"\n\n[mqtt]\nhost = "127.0.0.1"\nport = {mqtt_port}\n'
            f'client_id = "callstate-bench"\n\n[storage]\npath = "{work}/outbox.sqlite3"\n\n'
            f'[calls]\nenabled = {"true" if calls else "false"}\n\n[log]\nlevel = "warning"\n')
    log = open(os.path.join(work, "callrelay.log"), "wb")
    proc = b.spawn([binary, "run", "--config", conf], stdout=log, stderr=subprocess.STDOUT)
    b.wait_ready(http_port, time.monotonic(), proc)
    b.wait_quiet(opts.quiet_wait, opts.quiet_threshold)
    url = f"http://127.0.0.1:{http_port}/webhooks/piopiy/live"
    ticks0, io0 = b.cpu_ticks([proc.pid]), io_write_bytes(proc.pid)
    out = subprocess.run(["wrk", "-t2", f"-c{opts.connections}", f"-d{opts.duration:g}s", "--timeout", "5s", "-s", LUA, url],
                         capture_output=True, text=True, timeout=opts.duration + 60).stdout
    m = re.search(r"REQUESTS (\d+) NON2XX (\d+) P50_MS ([\d.]+) P99_MS ([\d.]+) RPS ([\d.]+)", out)
    if not m:
        raise RuntimeError(f"wrk printed no result line:\n{out}")
    requests, non2xx = int(m[1]), int(m[2])
    # Let delivery finish so its CPU and writes are counted too.
    deadline = time.monotonic() + (60 if with_broker else 0)
    while True:
        text = b.http_get(http_port, "/metrics")[1].decode()
        if time.monotonic() >= deadline:
            break
        if re.search(r"^callrelay_outbox_pending_events 0$", text, re.M):
            break
        time.sleep(0.2)
    ticks = b.cpu_ticks([proc.pid]) - ticks0
    written = io_write_bytes(proc.pid) - io0
    rss_kb = b.status_kb(proc.pid, "VmRSS")
    published = int(re.search(r"^callrelay_mqtt_acknowledged_total (\d+)", text, re.M)[1])
    b.stop(proc)
    if broker:
        b.stop(broker)
    log.close()
    ok = requests - non2xx
    return {
        "calls": calls, "broker": with_broker, "rps": float(m[5]), "p99_ms": float(m[4]), "answered": ok, "non2xx": non2xx,
        "cpu_us": ticks / b.CLK_TCK / max(ok, 1) * 1e6, "bytes_per_webhook": written / max(ok, 1),
        "rss_mb": rss_kb / 1024, "published_per_webhook": published / max(ok, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", required=True)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--modes", default="ingest,delivery", help="ingest: no broker (storage only); delivery: nodelay mosquitto, waits for the drain")
    ap.add_argument("--quiet-wait", type=float, default=20)
    ap.add_argument("--quiet-threshold", type=float, default=0.3)
    ap.add_argument("--tmp", default=os.environ.get("BENCH_TMP", "/tmp"))
    ap.add_argument("--results", default=os.path.join(b.ROOT, "bench", "results"))
    opts = ap.parse_args()
    runs = []
    try:
        for rep in range(opts.reps):
          for mode in opts.modes.split(","):
            for calls in (False, True) if rep % 2 == 0 else (True, False):
                r = one_run(opts.binary, calls, mode == "delivery", opts)
                b.log(f"rep {rep + 1} {mode} calls {'on' if calls else 'off'}: {r['rps']:.0f} req/s, p99 {r['p99_ms']:.1f} ms, "
                      f"{r['cpu_us']:.0f} us CPU, {r['bytes_per_webhook']:.0f} B written, {r['published_per_webhook']:.2f} msg per webhook")
                runs.append(r)
    finally:
        b.stop_all()
    lines = [
        f"# call state on vs off, {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC, c{opts.connections}, {opts.duration:g} s x {opts.reps}, "
        "bench/call-flows.lua (4 webhooks per call), medians; ingest: no broker; delivery: nodelay mosquitto, until drained",
        "",
        "| mode | calls | req/s | p99 ms | CPU per webhook | bytes written per webhook | MQTT messages per webhook | RSS at end |",
        "|---|---|---|---|---|---|---|---|",
    ]
    ratios = []
    for mode in opts.modes.split(","):
        sel = [r for r in runs if r["broker"] == (mode == "delivery")]
        med = lambda calls, k: statistics.median(r[k] for r in sel if r["calls"] == calls)  # noqa: E731
        for calls in (False, True):
            lines.append(
                f"| {mode} | {'on' if calls else 'off'} | {med(calls, 'rps'):,.0f} | {med(calls, 'p99_ms'):.1f} | {med(calls, 'cpu_us'):.0f} µs | "
                f"{med(calls, 'bytes_per_webhook'):,.0f} | {med(calls, 'published_per_webhook'):.2f} | {med(calls, 'rss_mb'):.1f} MB |")
        ratios.append(f"{mode} on/off req/s {med(True, 'rps') / med(False, 'rps'):.3f} (runs: "
                      + ", ".join(f"{'on' if r['calls'] else 'off'} {r['rps']:.0f}" for r in sel) + ")")
    lines.append("")
    lines += ratios
    report = "\n".join(lines)
    print(report)
    os.makedirs(opts.results, exist_ok=True)
    with open(os.path.join(opts.results, f"{datetime.date.today()}-callstate.txt"), "w") as f:
        f.write(report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
