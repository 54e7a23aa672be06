#!/usr/bin/env python3
"""callrelay benchmark: callrelay, mq-bridge and the durable Python peer under the same load.

Run it through bench/run.sh (which installs what is missing and builds the shipped binary). This
file only orchestrates processes it starts itself, on free loopback ports, and stops them by PID.

Systems (--systems, default all three, always run in this order):
  callrelay  the binary given with --binary (durable: SQLite outbox, 2xx after the commit)
  mqbridge   mq-bridge (PyPI mq-bridge-basic, Rust) via bench/mqbridge/run_mqbridge.py: one http ->
             mqtt route, QoS 1, topic piopiy/2222224/live/bench; 202 after the broker's PUBACK.
             Not durable (nothing persisted, 504 after 30 s with the broker down): no drain run,
             "stored" = answered 2xx, lost = answered - delivered when positive.
  peer       the durable Python peer, bench/peer/ (gunicorn + Flask + SQLite + paho-mqtt)

  for each repetition, for each broker config (stock mosquitto, then set_tcp_nodelay true):
    load run (each system in turn): fresh temp dir and broker, a QoS 1 subscriber (mosquitto_sub
      on piopiy/+/live/#, one line per message), start the system and time it to ready (first 200
      on /readyz; mq-bridge: its launcher's "ready" line), idle RSS 1 s later, wrk warm-up (c16,
      not reported), wrk c16 then c64 (-t2), after each: wait until the subscriber has every
      stored event -> answered vs delivered (lost); CPU per webhook = the system's process-tree
      utime+stime during the wrk phase / answers 2xx in it (µs); peak RSS (VmHWM) at the end.
    drain run (callrelay, then the peer; not mq-bridge): start with no broker, POST N events (wrk,
      fixed count), freeze the system (SIGSTOP), start the broker and a subscriber, unfreeze
      (SIGCONT), time until the subscriber has all N.
  then: medians over the repetitions, a summary table in issue 13's shape (system | durable |
  broker | c16 req/s | c64 req/s | c64 p99 | CPU per webhook (c64) | idle RSS, with callrelay's
  ratios to mq-bridge and to the peer), then the detailed tables (printed, and written to
  bench/results/<date>.md with the raw runs as JSON next to it).

Every number comes from a process started here; nothing is asserted (no timing test anywhere).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LUA = os.path.join(ROOT, "bench", "live-events.lua")
PEER_DIR = os.path.join(ROOT, "bench", "peer")
MQBRIDGE_LAUNCHER = os.path.join(ROOT, "bench", "mqbridge", "run_mqbridge.py")
# mq-bridge publishes every message to one fixed topic; this one matches TOPIC, so the same
# subscriber counts its messages.
MQBRIDGE_TOPIC = "piopiy/2222224/live/bench"
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
CLK_TCK = os.sysconf("SC_CLK_TCK")
TOPIC = "piopiy/+/live/#"
MARKER_TOPIC = "bench/marker"

STARTED: list[subprocess.Popen] = []  # every process started here, stopped by PID on exit


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- processes and /proc -------------------------------------------------------------------------


def spawn(args, **kw) -> subprocess.Popen:
    p = subprocess.Popen(args, **kw)
    STARTED.append(p)
    return p


def stop(p: subprocess.Popen | None, sig=signal.SIGTERM, timeout=20.0) -> None:
    if p is None or p.poll() is not None:
        return
    try:
        os.kill(p.pid, signal.SIGCONT)
        os.kill(p.pid, sig)
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
    except ProcessLookupError:
        pass


def stop_all() -> None:
    for p in reversed(STARTED):
        stop(p, timeout=10)


def children_of(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        except (OSError, ValueError):
            continue
        if ppid == pid:
            out.append(int(entry))
    return out


def tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo.extend(children_of(p))
    return pids


def status_kb(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_ticks(pids) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
            fields = stat[stat.rindex(")") + 2 :].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
        except (OSError, ValueError):
            pass
    return total


def machine_ticks() -> tuple[int, int]:
    """(busy, all) jiffies of the whole machine; busy = user+nice+system+irq+softirq+steal."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return v[0] + v[1] + v[2] + v[5] + v[6] + v[7], sum(v)


def children_rusage_ticks() -> int:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return int((r.ru_utime + r.ru_stime) * CLK_TCK)


def wait_quiet(max_wait: float, threshold_cores: float) -> float:
    """Waits (up to max_wait s) until the machine's busy CPU over 1 s is below threshold_cores.
    Returns the last measured busy cores (nothing of ours runs at this point)."""
    deadline = time.monotonic() + max_wait
    while True:
        b0, _ = machine_ticks()
        time.sleep(1.0)
        b1, _ = machine_ticks()
        busy = (b1 - b0) / CLK_TCK
        if busy <= threshold_cores or time.monotonic() > deadline:
            if busy > threshold_cores:
                log(f"machine still busy ({busy:.2f} cores of foreign load); measuring anyway")
            return busy
        time.sleep(2.0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout=10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.005)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def http_get(port: int, path: str, timeout=2.0) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head else 0
    if b"transfer-encoding: chunked" in head.lower():
        body = dechunk(body)
    return status, body


def dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return out


def wait_ready(port: int, t0: float, proc: subprocess.Popen, timeout=30.0) -> float:
    """Milliseconds from t0 (just before the process was spawned) to the first 200 on /readyz.
    Tight loop: a refused connect is retried after 0.5 ms."""
    deadline = t0 + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before it was ready")
        try:
            status, _ = http_get(port, "/readyz", timeout=1.0)
            if status == 200:
                return (time.monotonic() - t0) * 1000
        except OSError:
            pass
        time.sleep(0.0005)
    raise RuntimeError(f"not ready after {timeout} s")


# --- broker and subscriber ------------------------------------------------------------------------


def start_broker(workdir: str, port: int, nodelay: bool) -> subprocess.Popen:
    conf = os.path.join(workdir, f"mosquitto-{port}.conf")
    with open(conf, "w") as f:
        f.write(
            f"listener {port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence false\n"
            # A QoS 1 subscriber must never lose a message to the broker's queue limit (default 1000).
            "max_queued_messages 0\n"
            f"log_dest file {workdir}/mosquitto-{port}.log\n"
            + ("set_tcp_nodelay true\n" if nodelay else "")
        )
    p = spawn([MOSQUITTO, "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return p


class Subscriber:
    """mosquitto_sub at QoS 1 writing one '.' line per message; count = file size / 2.
    Also subscribed to a retained marker topic, so the first line proves it is subscribed."""

    def __init__(self, workdir: str, port: int, name: str):
        self.path = os.path.join(workdir, f"sub-{name}.out")
        subprocess.run(
            ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-r", "-t", MARKER_TOPIC, "-m", "m"], check=True
        )
        self.out = open(self.path, "wb")
        self.proc = spawn(
            ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-i", f"bench-sub-{name}",
             "-t", TOPIC, "-t", MARKER_TOPIC, "-F", "."],
            stdout=self.out, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while os.path.getsize(self.path) < 2:
            if time.monotonic() > deadline:
                raise RuntimeError("subscriber did not receive the retained marker")
            time.sleep(0.002)

    def count(self) -> int:
        return os.path.getsize(self.path) // 2 - 1  # minus the marker

    def close(self) -> None:
        stop(self.proc)
        self.out.close()


# --- wrk ------------------------------------------------------------------------------------------


@dataclass
class WrkResult:
    requests: int = 0
    non2xx: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    rps: float = 0.0
    socket_errors: str = ""
    cpu_s: float = 0.0


def run_wrk(url: str, conns: int, duration: float, fixed: int | None = None, count=None) -> WrkResult:
    """Timed run (-d duration), or fixed count: each wrk thread stops after fixed/2 answers (see
    live-events.lua), and since wrk itself only exits at the end of -d, it is interrupted (SIGINT:
    wrk stops and prints its summary) as soon as count() reaches fixed."""
    args = ["wrk", "-t2", f"-c{conns}", "--timeout", "5s", "-s", LUA]
    env = dict(os.environ)
    if fixed is None:
        args += [f"-d{duration:g}s", url]
    else:
        env["BENCH_FIXED_COUNT"] = "1"
        args += ["-d600s", url, "--", str(fixed), "2"]
    before = children_rusage_ticks()
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    if fixed is not None:
        deadline = time.monotonic() + 600
        while p.poll() is None and time.monotonic() < deadline and count() < fixed:
            time.sleep(0.02)
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    out = p.communicate(timeout=duration + 120 if fixed is None else 60)[0]
    cpu = (children_rusage_ticks() - before) / CLK_TCK
    m = re.search(r"REQUESTS (\d+) NON2XX (\d+) P50_MS ([\d.]+) P99_MS ([\d.]+) RPS ([\d.]+)", out)
    if not m:
        raise RuntimeError(f"wrk printed no result line:\n{out}")
    e = re.search(r"SOCKET_ERRORS (.*)", out)
    errs = e.group(1).strip() if e else ""
    return WrkResult(int(m[1]), int(m[2]), float(m[3]), float(m[4]), float(m[5]),
                     "" if errs == "connect 0 read 0 write 0 timeout 0" else errs, cpu)


# --- the systems ----------------------------------------------------------------------------------


class System:
    name = ""
    durable = True
    proc: subprocess.Popen | None = None
    http_port = 0

    def ready_ms(self, t0: float) -> float:
        return wait_ready(self.http_port, t0, self.proc)

    def answered(self, n: int) -> None:
        """Told the 2xx count after every wrk run (only a system without a stored counter uses it)."""

    def pids(self) -> list[int]:
        return tree(self.proc.pid) if self.proc and self.proc.poll() is None else []

    def rss_kb(self, key="VmRSS") -> int:
        return sum(status_kb(p, key) for p in self.pids())

    def signal_all(self, sig) -> None:
        for p in self.pids():
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass

    def stop(self) -> None:
        stop(self.proc, timeout=30)


class CallRelay(System):
    name = "callrelay"

    def __init__(self, binary: str):
        self.binary = binary

    def start(self, workdir: str, http_port: int, mqtt_port: int, drain: bool = False) -> None:
        self.http_port = http_port
        self.db = os.path.join(workdir, "outbox.sqlite3")
        conf = os.path.join(workdir, "callrelay.toml")
        with open(conf, "w") as f:
            f.write(
                f'[http]\nlisten = "127.0.0.1:{http_port}"\n\n'
                f'[mqtt]\nhost = "127.0.0.1"\nport = {mqtt_port}\nclient_id = "callrelay-bench"\n'
                + ("reconnect_min_ms = 100\nreconnect_max_ms = 1000\n" if drain else "")
                + f'\n[storage]\npath = "{self.db}"\n\n[log]\nlevel = "warning"\n'
            )
        self.log = open(os.path.join(workdir, "callrelay.log"), "wb")
        self.proc = spawn([self.binary, "run", "--config", conf], stdout=self.log, stderr=subprocess.STDOUT)

    def metrics(self) -> str:
        return http_get(self.http_port, "/metrics")[1].decode()

    def stored(self) -> int:
        text = self.metrics()
        m = re.search(r"^callrelay_outbox_stored_total (\d+)", text, re.M)
        if m:
            return int(m[1])
        found = re.findall(r'^callrelay_webhooks_total\{[^}]*result="stored"[^}]*\} (\d+)', text, re.M)
        if found:
            return sum(int(x) for x in found)
        # Fallback if /metrics changes shape: count rows from a read-only connection (WAL allows it).
        import sqlite3

        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True) as c:
            return c.execute("SELECT count(*) FROM events").fetchone()[0]

    def acknowledged(self) -> int | None:
        m = re.search(r"^callrelay_mqtt_acknowledged_total (\d+)", self.metrics(), re.M)
        return int(m[1]) if m else None


class Peer(System):
    name = "python peer"

    def __init__(self, workers: int, threads: int):
        self.workers, self.threads = workers, threads

    def start(self, workdir: str, http_port: int, mqtt_port: int, drain: bool = False) -> None:
        self.http_port = http_port
        env = dict(os.environ, PEER_DB=os.path.join(workdir, "peer.sqlite3"), PEER_MQTT_HOST="127.0.0.1",
                   PEER_MQTT_PORT=str(mqtt_port), PYTHONDONTWRITEBYTECODE="1")
        self.log = open(os.path.join(workdir, "peer.log"), "wb")
        self.proc = spawn(
            [sys.executable, "-m", "gunicorn", "-k", "gthread", "-w", str(self.workers), "--threads", str(self.threads),
             "--backlog", "2048", "-b", f"127.0.0.1:{http_port}", "--chdir", PEER_DIR, "--log-level", "warning", "app:app"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def stored(self) -> int:
        return json.loads(http_get(self.http_port, "/stats")[1])["stored"]

    def acknowledged(self) -> int | None:
        return json.loads(http_get(self.http_port, "/stats")[1])["delivered"]


class MqBridge(System):
    """mq-bridge through bench/mqbridge/run_mqbridge.py (see its README). The python launcher is
    the process that runs the Rust library (its tokio threads), so its own utime+stime is all of
    mq-bridge's CPU. No stored counter and no persistence: stored() = 2xx answers counted so far."""

    name = "mq-bridge"
    durable = False

    def start(self, workdir: str, http_port: int, mqtt_port: int, drain: bool = False) -> None:
        if drain:
            raise RuntimeError("mq-bridge has no drain phase: it does not persist, and does not start without a broker")
        self.http_port = http_port
        self.total_answered = 0
        self.out_path = os.path.join(workdir, "mqbridge.out")
        self.out = open(self.out_path, "wb")
        self.log = open(os.path.join(workdir, "mqbridge.log"), "wb")
        self.proc = spawn(
            [sys.executable, MQBRIDGE_LAUNCHER, "--http-port", str(http_port), "--broker-port", str(mqtt_port),
             "--topic", MQBRIDGE_TOPIC, "--qos", "1"],
            env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"), stdout=self.out, stderr=self.log)

    def ready_ms(self, t0: float, timeout=30.0) -> float:
        """Milliseconds from t0 to the launcher's "ready" line (printed once Route.start() has
        returned, i.e. the MQTT connection is up, and the HTTP port accepts). No HTTP probe: any
        POST would be published. Polled every 0.5 ms."""
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mq-bridge exited with {self.proc.returncode} before it was ready "
                                   f"(stderr in {self.log.name}; is mq-bridge-basic installed?)")
            with open(self.out_path, "rb") as f:
                if b"ready" in f.read():
                    return (time.monotonic() - t0) * 1000
            time.sleep(0.0005)
        raise RuntimeError(f"mq-bridge not ready after {timeout} s")

    def answered(self, n: int) -> None:
        self.total_answered += n

    def stored(self) -> int:
        return self.total_answered

    def acknowledged(self) -> int | None:
        return None

    def stop(self) -> None:
        super().stop()
        for f in (getattr(self, "out", None), getattr(self, "log", None)):
            if f:
                f.close()


# --- runs -----------------------------------------------------------------------------------------


def wait_delivered(system: System, sub: Subscriber, stall_s: float) -> tuple[int, int, float]:
    """Waits until the subscriber has every event the system stored (cumulative), or until the
    count stops moving for stall_s. Returns (stored, delivered, seconds waited)."""
    t0 = time.monotonic()
    target = system.stored()
    last, last_change = -1, t0
    while True:
        n = sub.count()
        if n >= target:
            target = system.stored()
            if n >= target:
                return target, n, time.monotonic() - t0
        if n != last:
            last, last_change = n, time.monotonic()
        elif time.monotonic() - last_change > stall_s:
            return system.stored(), n, time.monotonic() - t0
        time.sleep(0.02)


def new_workdir(tmp_root: str, tag: str) -> str:
    d = tempfile.mkdtemp(prefix=f"callrelay-bench-{tag}-", dir=tmp_root)
    os.chmod(d, 0o777)  # mosquitto run as root drops to user mosquitto and writes its log here
    return d


def load_run(system: System, nodelay: bool, opts) -> dict:
    wd = new_workdir(opts.tmp, "load")
    mport, hport = free_port(), free_port()
    res: dict = {"kind": "load", "system": system.name, "broker": "nodelay" if nodelay else "stock"}
    broker = start_broker(wd, mport, nodelay)
    sub = Subscriber(wd, mport, "load")
    try:
        res["foreign_before"] = round(wait_quiet(opts.quiet_wait, opts.quiet_threshold), 2)
        t0 = time.monotonic()
        system.start(wd, hport, mport)
        res["ready_ms"] = round(system.ready_ms(t0), 1)
        time.sleep(1.0)
        res["idle_rss_kb"] = system.rss_kb("VmRSS")
        url = f"http://127.0.0.1:{hport}/webhooks/piopiy/live"
        w = run_wrk(url, 16, opts.warmup)
        system.answered(w.requests - w.non2xx)
        wait_delivered(system, sub, opts.stall)
        for conns in opts.connections:
            stored0, deliv0 = system.stored(), sub.count()
            ours = [*system.pids(), broker.pid, sub.proc.pid, os.getpid()]
            cpu_sys0, cpu_broker0, cpu_sub0 = cpu_ticks(system.pids()), cpu_ticks([broker.pid]), cpu_ticks([sub.proc.pid])
            busy0, _ = machine_ticks()
            ours0 = cpu_ticks(ours)
            t_start = time.monotonic()
            w = run_wrk(url, conns, opts.duration)
            elapsed = time.monotonic() - t_start
            busy1, _ = machine_ticks()
            ours1 = cpu_ticks(ours)
            cpu_sys1, cpu_broker1, cpu_sub1 = cpu_ticks(system.pids()), cpu_ticks([broker.pid]), cpu_ticks([sub.proc.pid])
            answered = w.requests - w.non2xx
            system.answered(answered)
            stored, delivered, catchup = wait_delivered(system, sub, opts.stall)
            cpu_sys2 = cpu_ticks(system.pids())  # after the catch-up too (work left over from the phase)
            busy = (busy1 - busy0) / CLK_TCK / elapsed
            foreign = ((busy1 - busy0) - (ours1 - ours0) - w.cpu_s * CLK_TCK) / CLK_TCK / elapsed
            res[f"c{conns}"] = {
                "rps": w.rps, "p50_ms": w.p50_ms, "p99_ms": w.p99_ms, "answered": answered,
                "non2xx": w.non2xx, "socket_errors": w.socket_errors,
                "stored": stored - stored0, "delivered": delivered - deliv0, "lost": max(0, stored - delivered),
                "catchup_s": round(catchup, 2),
                # The system's process-tree utime+stime during the wrk run / answers 2xx in it, in µs;
                # the second figure also counts its CPU during the catch-up wait after wrk stopped.
                "cpu_us_per_webhook": round((cpu_sys1 - cpu_sys0) / CLK_TCK / answered * 1e6, 1) if answered else None,
                "cpu_us_per_webhook_incl_catchup":
                    round((cpu_sys2 - cpu_sys0) / CLK_TCK / answered * 1e6, 1) if answered else None,
                "cpu_cores": {  # average cores used during the wrk run
                    "system": round((cpu_sys1 - cpu_sys0) / CLK_TCK / elapsed, 2),
                    "broker": round((cpu_broker1 - cpu_broker0) / CLK_TCK / elapsed, 2),
                    "subscriber": round((cpu_sub1 - cpu_sub0) / CLK_TCK / elapsed, 2),
                    "wrk": round(w.cpu_s / elapsed, 2),
                    "foreign": round(max(0.0, foreign), 2),
                    "machine_busy": round(busy, 2),  # of os.cpu_count() cores, everything included
                },
            }
            log(f"  {system.name:11s} {res['broker']:7s} c{conns}: {w.rps:9.0f}/s p50 {w.p50_ms:.2f} p99 {w.p99_ms:.2f} ms, "
                f"answered {answered} delivered {delivered - deliv0} lost {max(0, stored - delivered)} "
                f"cpu/webhook {res[f'c{conns}']['cpu_us_per_webhook']} µs, cores {res[f'c{conns}']['cpu_cores']}")
        res["peak_rss_kb"] = sum(status_kb(p, "VmHWM") for p in system.pids())
    finally:
        system.stop()
        sub.close()
        stop(broker)
        if not opts.keep:
            shutil.rmtree(wd, ignore_errors=True)
    log(f"  {system.name:11s} {res['broker']:7s} ready {res.get('ready_ms')} ms, idle RSS {res.get('idle_rss_kb', 0) / 1024:.1f} MB, "
        f"peak RSS {res.get('peak_rss_kb', 0) / 1024:.1f} MB")
    return res


def drain_run(system: System, nodelay: bool, n: int, opts) -> dict:
    wd = new_workdir(opts.tmp, "drain")
    mport, hport = free_port(), free_port()
    res: dict = {"kind": "drain", "system": system.name, "broker": "nodelay" if nodelay else "stock", "requested": n}
    broker = sub = None
    try:
        res["foreign_before"] = round(wait_quiet(opts.quiet_wait, opts.quiet_threshold), 2)
        system.start(wd, hport, mport, drain=True)  # no broker on mport yet
        wait_ready(hport, time.monotonic(), system.proc)
        w = run_wrk(f"http://127.0.0.1:{hport}/webhooks/piopiy/live", 16, 0, fixed=n, count=system.stored)
        time.sleep(0.2)  # answers still in flight when wrk was interrupted
        stored = system.stored()
        res.update(accepted_rps=w.rps, stored=stored, backlog_rss_kb=system.rss_kb("VmRSS"))
        system.signal_all(signal.SIGSTOP)  # so it cannot connect before the subscriber is subscribed
        broker = start_broker(wd, mport, nodelay)
        sub = Subscriber(wd, mport, "drain")
        t0 = time.monotonic()
        system.signal_all(signal.SIGCONT)
        t_first = None
        last, last_change = -1, t0
        while True:
            c = sub.count()
            now = time.monotonic()
            if c > 0 and t_first is None:
                t_first = now
            if c >= stored:
                break
            if c != last:
                last, last_change = c, now
            elif now - last_change > opts.stall:
                break
            time.sleep(0.005)
        t_last = time.monotonic()
        delivered = sub.count()
        res.update(
            delivered=delivered, lost=max(0, stored - delivered), acknowledged=system.acknowledged(),
            reconnect_s=round((t_first or t_last) - t0, 3), drain_s=round(t_last - (t_first or t_last), 3),
            total_s=round(t_last - t0, 3), peak_rss_kb=sum(status_kb(p, "VmHWM") for p in system.pids()),
        )
        res["drain_rps"] = round(delivered / res["drain_s"]) if res["drain_s"] > 0 else 0
        log(f"  {system.name:11s} {res['broker']:7s} drain: {stored} stored (at {w.rps:.0f}/s), {delivered} delivered in "
            f"{res['drain_s']} s after a {res['reconnect_s']} s reconnect -> {res['drain_rps']}/s")
    finally:
        system.stop()
        if sub:
            sub.close()
        stop(broker)
        if not opts.keep:
            shutil.rmtree(wd, ignore_errors=True)
    return res


# --- report ---------------------------------------------------------------------------------------


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def rng(values):
    values = [v for v in values if v is not None]
    return (min(values), max(values)) if values else (None, None)


def fmt_num(v, digits=0):
    if v is None:
        return "–"
    return f"{v:,.{digits}f}"


def ratio(a, b):
    if a is None or not b:
        return ""
    r = a / b
    return f"×{r:.1f}" if r >= 0.95 else f"×{r:.2f}"


SYSTEMS = ["callrelay", "mq-bridge", "python peer"]  # report order (= run order)
COMPARED = [("mq-bridge", "mq-bridge"), ("python peer", "peer")]  # callrelay ÷ these: (system, label)
NOT_DURABLE = "n/a (not durable)"


def build_report(runs: list[dict], meta: dict) -> str:
    systems = [s for s in SYSTEMS if any(r["system"] == s for r in runs)]
    brokers = [b for b in ("stock", "nodelay") if any(r["broker"] == b for r in runs)]
    loads = lambda s, b: [r for r in runs if r["kind"] == "load" and r["system"] == s and r["broker"] == b]
    drains = lambda s, b: [r for r in runs if r["kind"] == "drain" and r["system"] == s and r["broker"] == b]
    conns = meta["connections"]
    durable = {"callrelay": True, "python peer": True, "mq-bridge": False}
    any_drain = any(r["kind"] == "drain" for r in runs)
    compared = [(s, label) for s, label in COMPARED if s in systems]

    def cell(s, b, key, c=None):
        rs = loads(s, b) if key not in ("drain_rps",) else drains(s, b)
        vals = [(r.get(f"c{c}", {}) if c else r).get(key) for r in rs]
        return med(vals)

    def val(s, b, key, c=None, scale=1.0, digits=0, unit="", with_ratios=True):
        """A median, formatted; on a callrelay row followed by its ratios to the other systems."""
        x = cell(s, b, key, c)
        x = None if x is None else x * scale
        txt = fmt_num(x, digits) + (unit if x is not None else "")
        if s == "callrelay" and with_ratios and x is not None:
            parts = []
            for other, label in compared:
                y = cell(other, b, key, c)
                r = ratio(x, None if y is None else y * scale)
                if r:
                    parts.append(f"{r} vs {label}")
            if parts:
                txt += " (" + ", ".join(parts) + ")"
        return txt

    lines = []
    # Summary, issue 13's shape.
    lines.append(f"Summary: medians of {meta['reps']} repetition(s), wrk -t2, {meta['duration']:g} s per phase; on callrelay rows, "
                 "in parentheses: callrelay ÷ mq-bridge and callrelay ÷ python peer, same broker and load, same run "
                 "(req/s: higher is better; p99, CPU, RSS: lower is better).")
    lines.append("")
    lines.append("| system | durable | broker | c16 req/s | c64 req/s | c64 p99 | CPU per webhook (c64) | idle RSS |")
    lines.append("|---|---|---|---|---|---|---|---|")
    for b in brokers:
        for s in systems:
            if not loads(s, b):
                continue
            d = "yes" if durable.get(s) else "no"
            c16 = val(s, b, "rps", 16) if 16 in conns else "–"
            c64 = val(s, b, "rps", 64) if 64 in conns else "–"
            p99 = val(s, b, "p99_ms", 64, digits=1, unit=" ms") if 64 in conns else "–"
            cpu = val(s, b, "cpu_us_per_webhook", 64, unit=" µs") if 64 in conns else "–"
            rss = val(s, b, "idle_rss_kb", None, 1 / 1024, 1, " MB")
            lines.append(f"| {s} | {d} | {b} | {c16} | {c64} | {p99} | {cpu} | {rss} |")
    lines.append("")
    lines.append("CPU per webhook = the system's own processes' utime+stime (/proc/PID/stat, summed over its process tree: "
                 "callrelay's one process, mq-bridge's python launcher that runs the Rust library, the peer's gunicorn master "
                 "and worker) during the wrk phase ÷ answers 2xx in that phase. The broker, subscriber and wrk are not included. "
                 "Durable: callrelay and the peer answer 2xx after the webhook is committed to SQLite; mq-bridge answers 202 after "
                 "the broker's PUBACK and keeps nothing (broker down: 504 after 30 s, no drain). A system that still delivers after "
                 "wrk stops (the catch-up column below) does part of a phase's work outside it: the CPU figure that includes "
                 "the catch-up is in the ranges table.")
    lines.append("")

    lines.append(f"Medians of {meta['reps']} repetition(s); ratios in parentheses = callrelay ÷ the other system, same broker and load. "
                 f"Stripped callrelay binary: **{meta['binary_stripped_bytes'] / 1e6:.1f} MB** "
                 f"({meta['binary_stripped_bytes'] / 2**20:.1f} MiB; unstripped {meta['binary_bytes'] / 1e6:.1f} MB).")
    lines.append("")
    lines.append("| system | broker | conns | req/s | p50 ms | p99 ms | CPU µs per webhook | answered / delivered (lost) | idle RSS MB | peak RSS MB | ready ms | drain events/s |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for b in brokers:
        for c in conns:
            for s in systems:
                if not loads(s, b):
                    continue
                rs = loads(s, b)
                answered = sum(r.get(f"c{c}", {}).get("answered", 0) for r in rs)
                delivered = sum(r.get(f"c{c}", {}).get("delivered", 0) for r in rs)
                lost = sum(r.get(f"c{c}", {}).get("lost", 0) for r in rs)
                drain = NOT_DURABLE if not durable.get(s) else val(s, b, "drain_rps", None)
                lines.append(
                    f"| {s} | {b} | {c} | {val(s, b, 'rps', c)} | {val(s, b, 'p50_ms', c, digits=2)} | {val(s, b, 'p99_ms', c, digits=2)} | "
                    f"{val(s, b, 'cpu_us_per_webhook', c)} | "
                    f"{answered:,} / {delivered:,} ({lost}) | {val(s, b, 'idle_rss_kb', None, 1 / 1024, 1)} | "
                    f"{val(s, b, 'peak_rss_kb', None, 1 / 1024, 1)} | {val(s, b, 'ready_ms', None, 1, 0)} | {drain} |")
    lines.append("")
    lines.append("answered / delivered (lost): sums over the repetitions; answered = 2xx seen by wrk (mq-bridge answers 202), delivered = "
                 "messages the QoS 1 subscriber received for that phase (it includes requests still in flight when wrk stopped, so it can "
                 "exceed answered), lost = stored by the system but never received (mq-bridge stores nothing: lost = answered − delivered, "
                 "when positive). RSS, ready and drain do not depend on the load phase and are repeated on each row of a system/broker "
                 "pair; peak RSS is VmHWM after the c16 and c64 phases (peer: summed over its processes). Ready: first 200 on /readyz "
                 "(mq-bridge has none: its launcher's `ready` line, printed once the route is connected to the broker and the HTTP port "
                 "accepts). mq-bridge has no drain phase: it does not persist, and with the broker down it answers 504 after 30 s.")
    lines.append("")
    # Targets (issue 5), from the nodelay broker when present (the stock one is shown above).
    if "callrelay" in systems:
        lines.append("Targets (issue 5), callrelay medians per broker config:")
        lines.append("")
        lines.append("| target | " + " | ".join(brokers) + " |")
        lines.append("|---|" + "---|" * len(brokers) + "")
        def tgt(label, key, c, goal, better, scale=1.0):
            row = f"| {label} |"
            for b in brokers:
                x = cell("callrelay", b, key, c)
                if x is None:
                    row += " – |"
                    continue
                x *= scale
                ok = x >= goal if better == "high" else x <= goal
                row += f" {x:,.1f} {'✅' if ok else '❌'} |"
            return row
        if 64 in conns:
            lines.append(tgt("c64 ≥ 20,000 webhooks/s", "rps", 64, 20000, "high"))
            lines.append(tgt("c64 p99 ≤ 10 ms", "p99_ms", 64, 10, "low"))
            row = "| c64 0 lost |"
            for b in brokers:
                lost = sum(r.get("c64", {}).get("lost", 0) for r in loads("callrelay", b))
                row += f" {lost} {'✅' if lost == 0 else '❌'} |"
            lines.append(row)
        lines.append(tgt("drain ≥ 30,000 events/s", "drain_rps", None, 30000, "high"))
        lines.append(tgt("idle RSS ≤ 15 MB", "idle_rss_kb", None, 15, "low", 1 / 1024))
        lines.append(tgt("RSS under load ≤ 40 MB", "peak_rss_kb", None, 40, "low", 1 / 1024))
        lines.append(tgt("ready ≤ 50 ms", "ready_ms", None, 50, "low"))
        size_mb = meta["binary_stripped_bytes"] / 1e6
        lines.append(f"| stripped binary ≤ 20 MB |" + f" {size_mb:.2f} MB ({meta['binary_stripped_bytes'] / 2**20:.2f} MiB) {'✅' if size_mb <= 20 else '❌'} |" * len(brokers))
        lines.append("")
    lines.append("RSS in MiB (kB from /proc ÷ 1024). Ranges (min–max over repetitions), CPU split and foreign load: see the raw runs below.")
    lines.append("")
    # Ranges and CPU split
    lines.append("| system | broker | conns | req/s min–max | p99 min–max | CPU µs per webhook min–max | CPU µs per webhook incl. catch-up (median) | delivery catch-up after the phase, s (median) | cores used (median): system / broker / subscriber / wrk / foreign / whole machine busy |")
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for b in brokers:
        for c in conns:
            for s in systems:
                rs = [r.get(f"c{c}") for r in loads(s, b) if r.get(f"c{c}")]
                if not rs:
                    continue
                lo, hi = rng([r["rps"] for r in rs])
                plo, phi = rng([r["p99_ms"] for r in rs])
                clo, chi = rng([r.get("cpu_us_per_webhook") for r in rs])
                cinc = med([r.get("cpu_us_per_webhook_incl_catchup") for r in rs])
                cores = " / ".join(f"{med([r['cpu_cores'].get(k) for r in rs]) or 0:.2f}"
                                   for k in ("system", "broker", "subscriber", "wrk", "foreign", "machine_busy"))
                catch = med([r["catchup_s"] for r in rs])
                lines.append(f"| {s} | {b} | {c} | {lo:,.0f}–{hi:,.0f} | {plo:.2f}–{phi:.2f} | {fmt_num(clo)}–{fmt_num(chi)} | "
                             f"{fmt_num(cinc)} | {catch:.2f} | {cores} |")
    lines.append("")
    if any_drain:
        lines.append("| system | broker | drain N | accepted while broker down, req/s | reconnect s | drain s | drain events/s min–max | lost |")
        lines.append("|---|---|---|---|---|---|---|---|")
        for b in brokers:
            for s in systems:
                if not durable.get(s):
                    if loads(s, b):
                        lines.append(f"| {s} | {b} | {NOT_DURABLE} | – | – | – | – | – |")
                    continue
                rs = drains(s, b)
                if not rs:
                    continue
                lo, hi = rng([r["drain_rps"] for r in rs])
                lines.append(f"| {s} | {b} | {med([r['stored'] for r in rs]):,.0f} | {med([r['accepted_rps'] for r in rs]):,.0f} | "
                             f"{med([r['reconnect_s'] for r in rs]):.2f} | {med([r['drain_s'] for r in rs]):.2f} | {lo:,}–{hi:,} | "
                             f"{sum(r['lost'] for r in rs)} |")
    return "\n".join(lines)


def machine_info(opts) -> dict:
    def sh(cmd):
        try:
            return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=20).stdout.strip()
        except Exception:
            return ""
    cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "commit": sh(f"git -C {ROOT} rev-parse --short HEAD") + (" (with uncommitted changes)" if sh(f"git -C {ROOT} status --porcelain --untracked-files=no") else ""),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "mem": sh("free -g | awk '/Mem:/{print $2\" GiB\"}'"),
        "kernel": platform.release(),
        "os": sh(". /etc/os-release && echo $PRETTY_NAME"),
        "disk": sh(f"df --output=source,fstype {opts.tmp} | tail -1") + " " + sh(f"lsblk -ndo NAME,ROTA,SIZE,MODEL $(df --output=source {opts.tmp} | tail -1) 2>/dev/null"),
        "swift": sh("swift --version 2>&1 | head -1"),
        "mosquitto": sh(f"{MOSQUITTO} -h 2>&1 | head -1"),
        "wrk": sh("wrk -v 2>&1 | head -1"),
        "sqlite": sh("python3 -c 'import sqlite3; print(sqlite3.sqlite_version)'") + " (python); callrelay links the system libsqlite3",
        "python": platform.python_version(),
        "peer_packages": sh(f"{sys.executable} -c 'import flask, gunicorn, importlib.metadata as m; "
                            "print(\"flask\", m.version(\"flask\"), \"gunicorn\", gunicorn.__version__, \"paho-mqtt\", m.version(\"paho-mqtt\"))'"),
        "mqbridge_package": sh(f"{sys.executable} -c 'import importlib.metadata as m; print(\"mq-bridge-basic\", m.version(\"mq-bridge-basic\"))'"),
        "load_before": sh("cat /proc/loadavg"),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", required=True, help="the callrelay binary to run (the stripped release build, as shipped); "
                    "its size is reported even when callrelay is not in --systems")
    ap.add_argument("--unstripped-bytes", type=int, default=0, help="size of the binary before strip, for the report")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=float, default=12, help="seconds per wrk phase")
    ap.add_argument("--warmup", type=float, default=3, help="seconds of the c16 warm-up before the phases (not reported)")
    ap.add_argument("--connections", default="16,64", help="wrk -c per phase, comma-separated (the summary reads c16 and c64)")
    ap.add_argument("--brokers", default="stock,nodelay", help="mosquitto configs: stock, nodelay (set_tcp_nodelay true)")
    ap.add_argument("--drain-n", type=int, default=50000, help="events in callrelay's drain run")
    ap.add_argument("--peer-drain-n", type=int, default=10000, help="events in the peer's drain run (mq-bridge has none)")
    ap.add_argument("--systems", default="callrelay,mqbridge,peer",
                    help="comma-separated, any of callrelay, mqbridge, peer (default all three; run in that order)")
    ap.add_argument("--peer-workers", type=int, default=1)
    ap.add_argument("--peer-threads", type=int, default=64)
    ap.add_argument("--no-drain", action="store_true", help="skip the drain runs")
    ap.add_argument("--stall", type=float, default=15, help="give up waiting for the subscriber after this many seconds without progress")
    ap.add_argument("--quiet-wait", type=float, default=20, help="wait up to this long for foreign load to drop before each run")
    ap.add_argument("--quiet-threshold", type=float, default=0.3, help="cores of foreign load tolerated before a run")
    ap.add_argument("--tmp", default=os.environ.get("BENCH_TMP", tempfile.gettempdir()))
    ap.add_argument("--results", default=os.path.join(ROOT, "bench", "results"))
    ap.add_argument("--keep", action="store_true", help="keep the temp dirs (logs, databases)")
    opts = ap.parse_args()
    opts.connections = [int(c) for c in opts.connections.split(",")]
    brokers = [b == "nodelay" for b in opts.brokers.split(",")]
    systems: list[System] = []
    names = [n.strip() for n in opts.systems.split(",") if n.strip()]
    unknown = set(names) - {"callrelay", "mqbridge", "mq-bridge", "peer"}
    if unknown or not names:
        ap.error(f"--systems: unknown {', '.join(sorted(unknown)) or '(empty)'}; use callrelay, mqbridge, peer")
    if "callrelay" in names:
        systems.append(CallRelay(opts.binary))
    if "mqbridge" in names or "mq-bridge" in names:
        systems.append(MqBridge())
    if "peer" in names:
        systems.append(Peer(opts.peer_workers, opts.peer_threads))

    fstype = subprocess.run(["stat", "-f", "-c", "%T", opts.tmp], capture_output=True, text=True).stdout.strip()
    if fstype in ("tmpfs", "ramfs"):
        log(f"warning: {opts.tmp} is {fstype}: fsync is free there; set BENCH_TMP to a directory on a real disk")

    meta = machine_info(opts)
    meta.update(reps=opts.reps, duration=opts.duration, warmup=opts.warmup, connections=opts.connections,
                binary_bytes=opts.unstripped_bytes, binary_stripped_bytes=os.path.getsize(opts.binary),
                systems=[s.name for s in systems],
                peer=f"gunicorn -k gthread -w {opts.peer_workers} --threads {opts.peer_threads}",
                mqbridge=f"bench/mqbridge/run_mqbridge.py --qos 1 --topic {MQBRIDGE_TOPIC} (http -> mqtt route, v5)",
                tmp=f"{opts.tmp} ({fstype})")
    runs: list[dict] = []
    started = time.monotonic()
    try:
        for rep in range(1, opts.reps + 1):
            for nodelay in brokers:
                log(f"rep {rep}/{opts.reps}, broker {'set_tcp_nodelay true' if nodelay else 'stock'}")
                for s in systems:
                    r = load_run(s, nodelay, opts)
                    r["rep"] = rep
                    runs.append(r)
                if not opts.no_drain:
                    for s in systems:
                        if not s.durable:
                            continue  # mq-bridge: nothing persisted, nothing to drain
                        n = opts.drain_n if isinstance(s, CallRelay) else opts.peer_drain_n
                        r = drain_run(s, nodelay, n, opts)
                        r["rep"] = rep
                        runs.append(r)
    finally:
        stop_all()
    meta["runtime_s"] = round(time.monotonic() - started)
    report = build_report(runs, meta)
    print(report)
    os.makedirs(opts.results, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d")
    path = os.path.join(opts.results, f"{stamp}.md")
    if os.path.exists(path):
        path = os.path.join(opts.results, datetime.datetime.now().strftime("%Y-%m-%d-%H%M") + ".md")
    with open(path, "w") as f:
        f.write(f"# callrelay benchmark, {meta['date']}\n\n")
        f.write("Produced by `bench/run.sh` (method: docs/benchmarks.md).\n\n")
        f.write(report + "\n\n## Machine and versions\n\n")
        for k, v in meta.items():
            f.write(f"- {k}: {v}\n")
        f.write("\n## Raw runs\n\n```json\n")
        for r in runs:
            f.write(json.dumps(r) + "\n")
        f.write("```\n")
    log(f"wrote {os.path.relpath(path, ROOT)} ({meta['runtime_s']} s)")
    return 0


if __name__ == "__main__":
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: (stop_all(), sys.exit(130)))
    sys.exit(main())
