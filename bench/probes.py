#!/usr/bin/env python3
"""callrelay hostile-client probes: a black-box look at what the HTTP listener does with slow,
partial, malformed and resource-hungry clients (issue 9), and a few "must keep holding" checks.

Python 3.11 standard library only. Starts the agent itself (`callrelay run --config FILE`) as a
plain process on a free loopback port, with a temporary directory holding its config, its outbox
and its log; MQTT points at a free port where no broker listens (the agent keeps webhooks in the
outbox and retries). Readiness = first 200 on GET /readyz. Stopped by PID (SIGTERM, SIGKILL after
10 s), temp dir removed. The file-descriptor probe restarts the agent with RLIMIT_NOFILE 256:256
(set in the child before exec); every other probe runs it with min(our hard limit, 65536), the
systemd unit's LimitNOFILE. The client raises its own soft limit first.

Nothing is asserted about how the agent *should* answer: each probe reports what happened (status
line, Content-Length, whether the body is JSON with an "error" key, whether the connection was
closed and when, whether a pipelined request after it was answered, RSS, CPU, /healthz). The exit
status is 1 only when the agent process died during a probe (a crash), else 0.

Probes (names for --only, comma-separated or repeated):
  valid          one valid webhook (fixture body) -> expect 200 {"id":...,"duplicate":false}
  pipelined      two valid webhooks in one write -> two answers, in order (the second's id is
                 learnt afterwards by sending it again: duplicate:true with the same id)
  deep-json      a body nested 10,000 deep -> status, and whether the agent survives
  connect        CONNECT /webhooks/piopiy with a GET /healthz pipelined behind it (same write);
                 then, on a second connection, the GET sent only after the first answer
  te-gzip        Transfer-Encoding: gzip, chunked with a plain (not gzipped) chunked body
  expect-100     Expect: 100-continue, body withheld 5 s (then sent anyway)
  rejects        23 parser-level rejects POSTed to /webhooks/piopiy/live (own table)
  partial-head   N connections send a partial request head, then nothing, for --hold-seconds
  slow-body      200 connections send a full head with Content-Length: 500, then 1 byte/s
  fd-limit       agent restarted under nofile 256; 300 connections opened and left idle

Each hold probe starts on a fresh agent (so its RSS is its own). Hold probes sample, every
second, the agent's CPU (/proc/PID/stat utime+stime, % of one core), VmRSS and open fds, and (in
another thread) GET /healthz with a 2 s timeout; RSS is read again 2 s after the client closed its
connections and the agent's fds are back to where they were. "Closed at" is the time from a
connection's connect (and first bytes, sent at once) to the server's FIN/RST. Connects are
non-blocking, 500 at a time with 5 s each, so a server that stops accepting costs no more.
CPU figures depend on other load on the machine (load average is in the header).

Usage:
  python3 bench/probes.py --binary PATH [--hold-seconds 60] [--quick] [--only NAME] [--out FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import errno
import json
import os
import resource
import selectors
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

sys.dont_write_bytecode = True

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE_DIRS = ["/work/shared/piopiy/fixtures", os.path.join(HERE, "..", "Tests", "CallRelayNormalizeTests", "Fixtures", "piopiy")]
FIXTURE_NAME = "live_out_answered_leg_a.json"
LIVE = "/webhooks/piopiy/live"
CLK_TCK = os.sysconf("SC_CLK_TCK")
ORDER = ["partial-head", "slow-body", "fd-limit", "connect", "te-gzip", "expect-100", "rejects",
         "valid", "pipelined", "deep-json"]

log = lambda msg: print(f"[probes {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Bodies

_FIXTURE: dict | None = None


def fixture() -> dict:
    global _FIXTURE
    if _FIXTURE is None:
        for d in FIXTURE_DIRS:
            p = os.path.join(d, FIXTURE_NAME)
            if os.path.exists(p):
                with open(p) as f:
                    _FIXTURE = json.load(f)
                break
        else:
            raise SystemExit(f"fixture {FIXTURE_NAME} not found in {FIXTURE_DIRS}")
    return _FIXTURE


_SEQ = [0]


def body() -> bytes:
    """The fixture with a fresh cmiuuid and time, so every webhook is a new event (duplicate:false)."""
    _SEQ[0] += 1
    d = dict(fixture())
    d["cmiuuid"] = str(uuid.uuid4())
    d["time"] = int(time.time() * 1000) * 1000 + _SEQ[0]
    return json.dumps(d, separators=(",", ":")).encode()


def chunked(data: bytes, size=64) -> bytes:
    out = b""
    for i in range(0, len(data), size):
        piece = data[i:i + size]
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
    return out + b"0\r\n\r\n"


def post(path=LIVE, headers: list[str] | None = None, payload: bytes | None = None, version="HTTP/1.1") -> bytes:
    payload = body() if payload is None else payload
    hs = ["Host: 127.0.0.1", "Content-Type: application/json"] + (headers if headers is not None else [f"Content-Length: {len(payload)}"])
    return f"POST {path} {version}\r\n".encode() + "".join(h + "\r\n" for h in hs).encode() + b"\r\n" + payload


# ---------------------------------------------------------------------------------------------
# HTTP response parsing (enough for what the agent sends)

@dataclasses.dataclass
class Resp:
    status_line: str
    code: int | None
    headers: list[tuple[str, str]]
    body: bytes
    framing: str  # "content-length", "chunked", "none" (no body by rule), "to-close"

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    @property
    def json_error(self) -> bool:
        try:
            d = json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            return False
        return isinstance(d, dict) and "error" in d

    def json(self):
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            return None

    def short(self, body_chars=100) -> str:
        cl = self.header("content-length")
        parts = [self.status_line.strip()]
        parts.append(f"CL {cl}" if cl is not None else "no CL")
        if self.header("transfer-encoding"):
            parts.append(f"TE {self.header('transfer-encoding')}")
        if self.header("connection"):
            parts.append(f"Connection: {self.header('connection')}")
        others = [k for k, _ in self.headers if k.lower() not in ("content-length", "transfer-encoding", "connection")]
        if others:
            parts.append("also " + ", ".join(others))
        b = self.body.decode("utf-8", "replace")
        if len(b) > body_chars:
            b = b[:body_chars] + "…"
        parts.append(f"body `{b}`" if b else "empty body")
        if self.framing == "to-close":
            parts.append("(body read to close/timeout)")
        return ", ".join(parts)


def parse_responses(buf: bytes, final: bool) -> tuple[list[Resp], bytes]:
    """Complete responses at the front of buf. With final, a response with no framing takes the
    rest (read until close or timeout). Returns (responses, unparsed rest)."""
    out: list[Resp] = []
    i = 0
    while i < len(buf):
        end = buf.find(b"\r\n\r\n", i)
        if end < 0:
            break
        lines = buf[i:end].decode("latin-1").split("\r\n")
        sl = lines[0]
        parts = sl.split(" ", 2)
        code = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
        headers = [(ln.split(":", 1)[0].strip(), ln.split(":", 1)[1].strip()) for ln in lines[1:] if ":" in ln]
        r = Resp(sl, code, headers, b"", "none")
        start = end + 4
        te = (r.header("transfer-encoding") or "").lower()
        cl = r.header("content-length")
        if code is not None and (100 <= code < 200 or code in (204, 304)):
            nxt = start
        elif "chunked" in te:
            j, data, done = start, b"", False
            while True:
                k = buf.find(b"\r\n", j)
                if k < 0:
                    break
                try:
                    n = int(buf[j:k].split(b";")[0], 16)
                except ValueError:
                    break
                if n == 0:
                    k2 = buf.find(b"\r\n\r\n", k)  # trailers
                    if k2 < 0 and buf[k:k + 4] != b"\r\n\r\n":
                        break
                    nxt, done = (k + 4 if buf[k:k + 4] == b"\r\n\r\n" else k2 + 4), True
                    break
                if len(buf) < k + 2 + n + 2:
                    break
                data += buf[k + 2:k + 2 + n]
                j = k + 2 + n + 2
            if not done:
                break
            r.body, r.framing = data, "chunked"
        elif cl is not None and cl.strip().isdigit():
            n = int(cl)
            if len(buf) < start + n:
                break
            r.body, r.framing, nxt = buf[start:start + n], "content-length", start + n
        else:
            if not final:
                break
            r.body, r.framing, nxt = buf[start:], "to-close", len(buf)
        out.append(r)
        i = nxt
    return out, buf[i:]


def finals(resps: list[Resp]) -> list[Resp]:
    return [r for r in resps if r.code is None or r.code >= 200]


@dataclasses.dataclass
class Exchange:
    resps: list[Resp]
    closed: bool
    closed_after: float | None  # seconds after the request was sent
    error: str | None
    raw: bytes

    def first(self) -> Resp | None:
        f = finals(self.resps)
        return f[0] if f else None


def connect(port: int, timeout=5.0) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_exchange(s: socket.socket, want=1, timeout=3.0, linger=1.0, t0=None) -> Exchange:
    """Reads until `want` final responses are complete (or close, or timeout), then up to `linger`
    seconds more to see whether the server closes the connection."""
    t0 = time.monotonic() if t0 is None else t0
    buf, closed, closed_at, err = b"", False, None, None
    deadline = time.monotonic() + timeout
    phase_linger = False
    while True:
        if not phase_linger:
            rs, _ = parse_responses(buf, final=False)
            if len(finals(rs)) >= want:
                phase_linger = True
                deadline = time.monotonic() + linger
        left = deadline - time.monotonic()
        if left <= 0:
            break
        s.settimeout(left)
        try:
            data = s.recv(65536)
        except socket.timeout:
            break
        except OSError as e:
            closed, closed_at, err = True, time.monotonic() - t0, errno.errorcode.get(e.errno, str(e))
            break
        if not data:
            closed, closed_at = True, time.monotonic() - t0
            break
        buf += data
    rs, _ = parse_responses(buf, final=True)
    return Exchange(rs, closed, closed_at, err, buf)


def http_get(port: int, path: str, timeout=2.0) -> tuple[int | None, float]:
    """(status or None, seconds). Raises OSError/timeout on failure."""
    t0 = time.monotonic()
    with connect(port, timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        ex = read_exchange(s, want=1, timeout=max(0.01, timeout - (time.monotonic() - t0)), linger=0, t0=t0)
    r = ex.first()
    if r is None:
        raise socket.timeout("no answer")
    return r.code, time.monotonic() - t0


# ---------------------------------------------------------------------------------------------
# The agent

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_proc(pid: int) -> dict:
    """cpu ticks (utime+stime), rss kB, open fds; {} when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
        rss = 0
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
        try:
            fds = len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            fds = None
        return {"ticks": ticks, "rss_kb": rss, "fds": fds, "t": time.monotonic()}
    except (OSError, IndexError, ValueError):
        return {}


class Agent:
    def __init__(self, binary: str):
        self.binary = os.path.abspath(binary)
        self.proc: subprocess.Popen | None = None
        self.dir: str | None = None
        self.port = 0
        self.nofile = None
        self.default_nofile = None
        self.base_fds = None
        self.deaths: list[str] = []
        self.stopped_outside: list[str] = []

    def start(self, nofile: int | None = None) -> None:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        default = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
        self.default_nofile = default
        self.nofile = nofile or default
        self.dir = tempfile.mkdtemp(prefix="callrelay-probes-")
        self.port = free_port()
        conf = os.path.join(self.dir, "callrelay.toml")
        with open(conf, "w") as f:
            f.write(f'[http]\nlisten = "127.0.0.1:{self.port}"\ntoken = ""\n\n'
                    f'[mqtt]\nhost = "127.0.0.1"\nport = {free_port()}\nclient_id = "callrelay-probes"\n\n'
                    f'[storage]\npath = "{os.path.join(self.dir, "outbox.sqlite3")}"\n')
        self.logf = open(os.path.join(self.dir, "callrelay.log"), "wb")
        lim = self.nofile

        def pre():
            resource.setrlimit(resource.RLIMIT_NOFILE, (lim, lim))
            os.setsid()

        self.proc = subprocess.Popen([self.binary, "run", "--config", conf], stdin=subprocess.DEVNULL,
                                     stdout=self.logf, stderr=subprocess.STDOUT, preexec_fn=pre)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"agent exited with {self.proc.returncode} before it was ready:\n{self.log_tail()}")
            try:
                if http_get(self.port, "/readyz", timeout=1.0)[0] == 200:
                    log(f"agent pid {self.proc.pid} ready on 127.0.0.1:{self.port} (nofile {lim})")
                    time.sleep(0.5)
                    self.base_fds = read_proc(self.proc.pid).get("fds")
                    return
            except OSError:
                pass
            time.sleep(0.02)
        raise SystemExit("agent not ready after 60 s")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n=20) -> str:
        try:
            with open(os.path.join(self.dir, "callrelay.log"), "rb") as f:
                return b"".join(f.readlines()[-n:]).decode("utf-8", "replace")
        except OSError:
            return ""

    def log_size(self) -> int:
        try:
            return os.path.getsize(os.path.join(self.dir, "callrelay.log"))
        except OSError:
            return 0

    def stop(self) -> int | None:
        rc = None
        if self.proc is not None:
            if self.proc.poll() is None:
                try:
                    os.kill(self.proc.pid, signal.SIGTERM)
                    rc = self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    log(f"agent pid {self.proc.pid} still running 10 s after SIGTERM: SIGKILL")
                    os.kill(self.proc.pid, signal.SIGKILL)
                    rc = self.proc.wait()
            else:
                rc = self.proc.returncode
            self.logf.close()
        if self.dir:
            subprocess.run(["rm", "-rf", self.dir])
        self.proc, self.dir = None, None
        return rc

    def restart(self, nofile: int | None = None) -> None:
        self.stop()
        self.start(nofile)

    def check(self, probe: str) -> str | None:
        """None when alive; else records the death and restarts the agent. An exit after the
        agent logged "signal received" was a signal from outside this script (another process
        on the machine), not a crash: reported, but it does not make the exit status 1."""
        if self.alive():
            return None
        rc, tail = self.proc.returncode, self.log_tail()
        outside = "signal received" in tail
        what = "was STOPPED BY AN OUTSIDE SIGNAL (its log says \"signal received\"; not a crash, the probe's figures are void)" if outside else "DIED"
        msg = f"agent {what} during {probe} (exit {rc}); log tail:\n{tail}"
        log(msg)
        (self.stopped_outside if outside else self.deaths).append(msg)
        nofile = self.nofile
        self.stop()
        self.start(nofile if nofile == 256 else None)
        return f"agent stopped by an outside signal (exit {rc}): rerun this probe" if outside else f"agent died (exit status {rc})"

    def settle(self, timeout=15.0) -> None:
        """Waits until the agent's open fds are back near those it had when ready (connections cleaned up)."""
        baseline_fds = self.base_fds
        if baseline_fds is None:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            p = read_proc(self.pid)
            if not p or p["fds"] is None or p["fds"] <= baseline_fds + 2:
                return
            time.sleep(0.2)


# ---------------------------------------------------------------------------------------------
# Hold probes

class Watch:
    """Per-second CPU/RSS/fds of the agent and GET /healthz (2 s timeout) while connections are held."""

    def __init__(self, agent: Agent):
        self.agent = agent
        self.samples: list[dict] = []
        self.health: list[tuple[float, int | None, float | None, str | None]] = []
        self.stop_ev = threading.Event()

    def __enter__(self):
        self.t0 = time.monotonic()
        self.start = read_proc(self.agent.pid)
        self.threads = [threading.Thread(target=self._sample, daemon=True), threading.Thread(target=self._health, daemon=True)]
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.end = read_proc(self.agent.pid)
        self.stop_ev.set()
        for t in self.threads:
            t.join(timeout=5)

    def _sample(self):
        while not self.stop_ev.wait(1.0):
            p = read_proc(self.agent.pid)
            if p:
                self.samples.append(p)

    def _health(self):
        while not self.stop_ev.is_set():
            t = time.monotonic()
            try:
                code, lat = http_get(self.agent.port, "/healthz", timeout=2.0)
                self.health.append((t - self.t0, code, lat, None))
            except OSError as e:
                self.health.append((t - self.t0, None, None, type(e).__name__ if not isinstance(e, socket.timeout) else "timeout"))
            self.stop_ev.wait(max(0.0, 1.0 - (time.monotonic() - t)))

    def cpu_pct(self) -> str:
        if not self.start or not self.end:
            return "n/a (agent gone)"
        avg = (self.end["ticks"] - self.start["ticks"]) / CLK_TCK / (self.end["t"] - self.start["t"]) * 100
        seq = [self.start] + self.samples
        peak = max(((b["ticks"] - a["ticks"]) / CLK_TCK / (b["t"] - a["t"]) * 100 for a, b in zip(seq, seq[1:])), default=avg)
        low = min(((b["ticks"] - a["ticks"]) / CLK_TCK / (b["t"] - a["t"]) * 100 for a, b in zip(seq, seq[1:])), default=avg)
        return f"{avg:.0f}% avg (1-s samples {low:.0f}–{peak:.0f}%)"

    def rss(self) -> tuple[int, int]:
        return self.start.get("rss_kb", 0), self.end.get("rss_kb", 0)

    def healthz(self) -> str:
        n = len(self.health)
        ok = [h for h in self.health if h[1] == 200]
        other = sorted({str(h[1]) for h in self.health if h[1] not in (None, 200)})
        fail = [h for h in self.health if h[1] is None]
        s = f"{len(ok)}/{n} answered 200 within 2 s"
        if ok:
            s += f" (max {max(h[2] for h in ok) * 1000:.0f} ms)"
        if other:
            s += f"; other statuses {','.join(other)}"
        if fail:
            kinds = sorted({h[3] for h in fail})
            s += f"; {len(fail)} failed ({','.join(kinds)}), first at {fail[0][0]:.0f} s"
        return s


def fmt_secs(xs: list[float]) -> str:
    if not xs:
        return "—"
    return f"{min(xs):.1f} / {statistics.median(xs):.1f} / {max(xs):.1f} s"


def mib(kb: int) -> str:
    return f"{kb / 1024:.1f}"


def hold(agent: Agent, n: int, payload: bytes | None, seconds: float, drip: bytes | None = None, client_close_watch=0.0) -> dict:
    """Opens n connections, sends payload on each (None = nothing), observes for `seconds`
    (sending `drip` on every open connection each second), then closes the client side."""
    base = read_proc(agent.pid)
    log_before = agent.log_size()
    sel = selectors.DefaultSelector()
    conns = []  # dict per connection
    connect_errors: dict[str, int] = {}
    t_open = time.monotonic()
    # non-blocking connects, in batches of 500, each batch given up to 5 s: a server that stops
    # accepting (full backlog) must not cost a blocking timeout per connection
    for first in range(0, n, 500):
        pending = {}
        for _ in range(first, min(n, first + 500)):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            rc = s.connect_ex(("127.0.0.1", agent.port))
            if rc not in (0, errno.EINPROGRESS):
                k = errno.errorcode.get(rc, str(rc))
                connect_errors[k] = connect_errors.get(k, 0) + 1
                s.close()
                continue
            pending[s.fileno()] = s
        wsel = selectors.DefaultSelector()
        for s in pending.values():
            wsel.register(s, selectors.EVENT_WRITE)
        deadline = time.monotonic() + 5.0
        while pending and time.monotonic() < deadline:
            for key, _ in wsel.select(timeout=max(0.0, deadline - time.monotonic())):
                s = key.fileobj
                wsel.unregister(s)
                del pending[s.fileno()]
                rc = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if rc:
                    k = errno.errorcode.get(rc, str(rc))
                    connect_errors[k] = connect_errors.get(k, 0) + 1
                    s.close()
                    continue
                t = time.monotonic()
                c = {"s": s, "t": t, "closed": None, "how": None, "data": b""}
                conns.append(c)
                if payload:
                    try:
                        s.send(payload)  # small: fits the empty send buffer
                    except OSError as e:  # connected, then closed by the server at once
                        c["closed"], c["how"] = time.monotonic() - t, "send " + errno.errorcode.get(e.errno, "error")
                        continue
                sel.register(s, selectors.EVENT_READ, c)
        wsel.close()
        for s in pending.values():
            connect_errors["connect timeout 5 s"] = connect_errors.get("connect timeout 5 s", 0) + 1
            s.close()
    opened = time.monotonic() - t_open
    log(f"  {len(conns)}/{n} connections open in {opened:.1f} s; holding {seconds:.0f} s")
    end = time.monotonic() + seconds
    next_drip = time.monotonic() + 1.0
    with Watch(agent) as w:
        while True:
            now = time.monotonic()
            if now >= end:
                break
            timeout = min(end, next_drip if drip else end) - now
            for key, _ in sel.select(timeout=max(0.0, timeout)):
                c = key.data
                try:
                    data = c["s"].recv(65536)
                except BlockingIOError:
                    continue
                except OSError as e:
                    data, c["how"] = None, errno.errorcode.get(e.errno, "error")
                if data:
                    c["data"] += data
                    continue
                c["closed"] = time.monotonic() - c["t"]
                c["how"] = c["how"] or "FIN"
                sel.unregister(c["s"])
            if drip and time.monotonic() >= next_drip:
                next_drip += 1.0
                for c in conns:
                    if c["closed"] is None:
                        try:
                            c["s"].send(drip)
                        except BlockingIOError:
                            pass
                        except OSError as e:
                            c["closed"] = time.monotonic() - c["t"]
                            c["how"] = "send " + errno.errorcode.get(e.errno, "error")
                            sel.unregister(c["s"])
            if not agent.alive():
                break
    held = read_proc(agent.pid)
    grew = agent.log_size() - log_before
    log_lines: list[str] = []
    if grew > 0:
        with open(os.path.join(agent.dir, "callrelay.log"), "rb") as f:
            f.seek(log_before)
            log_lines = f.read(min(grew, 1 << 20)).decode("utf-8", "replace").splitlines()
    # close the client side, then see whether the agent recovers
    for c in conns:
        try:
            c["s"].close()
        except OSError:
            pass
    sel.close()
    after = {}
    if client_close_watch and agent.alive():
        t = time.monotonic()
        rec = None
        a0 = read_proc(agent.pid)
        while time.monotonic() - t < client_close_watch:
            try:
                if http_get(agent.port, "/healthz", timeout=2.0)[0] == 200:
                    rec = time.monotonic() - t
                    break
            except OSError:
                pass
            time.sleep(0.2)
        time.sleep(3.0)
        a1 = read_proc(agent.pid)
        if a0 and a1:
            after["cpu_after"] = (a1["ticks"] - a0["ticks"]) / CLK_TCK / (a1["t"] - a0["t"]) * 100
        after["recovered"] = rec
    if agent.alive():
        agent.settle()
        time.sleep(2.0)
        after["rss_after_close"] = read_proc(agent.pid).get("rss_kb")
    closed = [c for c in conns if c["closed"] is not None]
    answers: dict[str, int] = {}
    json_errors = 0
    for c in conns:
        if c["data"]:
            rs, _ = parse_responses(c["data"], final=True)
            key = rs[0].status_line.strip() if rs else c["data"][:30].decode("latin-1")
            answers[key] = answers.get(key, 0) + 1
            json_errors += bool(rs and rs[0].json_error)
    hows: dict[str, int] = {}
    for c in closed:
        hows[c["how"]] = hows.get(c["how"], 0) + 1
    return {"n": n, "opened": len(conns), "connect_errors": connect_errors, "open_after": len(conns) - len(closed),
            "closed_at": [c["closed"] for c in closed], "close_kinds": hows, "answers": answers, "json_errors": json_errors,
            "watch": w, "base": base, "held": held, "log_grew": grew, "log_lines": log_lines, **after}


def hold_row(name: str, sent: str, r: dict, seconds: float) -> dict:
    w: Watch = r["watch"]
    r0, r1 = r["base"].get("rss_kb", 0), w.rss()[1]  # before opening the connections; end of the hold
    per = ""
    if r["open_after"]:
        per = f" ({(r1 - r0) / r['opened']:.1f} KiB/conn)"
    ans = "none"
    if r["answers"]:
        ans = "; ".join(f"{v}× `{k}`" for k, v in sorted(r["answers"].items(), key=lambda kv: -kv[1]))
        ans += f" ({r['json_errors']} with JSON error body)"
    conn = f"{r['open_after']}/{r['opened']} open after {seconds:.0f} s"
    if r["connect_errors"]:
        conn += f"; {sum(r['connect_errors'].values())} failed to connect ({', '.join(f'{k} {v}' for k, v in r['connect_errors'].items())})"
    closed = "none closed"
    if r["closed_at"]:
        closed = f"{len(r['closed_at'])} closed ({', '.join(f'{k} {v}' for k, v in r['close_kinds'].items())}) at min/med/max {fmt_secs(r['closed_at'])}"
    fds = r["held"].get("fds") if r["held"] else None
    extra = f"agent fds {r['base'].get('fds')} → {fds} at end of hold"
    if "recovered" in r:
        rec = r["recovered"]
        extra += "; after the client closed them: /healthz " + (f"200 after {rec:.1f} s" if rec is not None else "still failing after 20 s")
        if "cpu_after" in r:
            extra += f", CPU {r['cpu_after']:.0f}% over the next 3 s"
    extra += f"; agent log +{r['log_grew']} bytes during the hold"
    if r["log_lines"]:
        extra += f" (first line: `{r['log_lines'][0][:160]}`)"
    return {"probe": name, "sent": sent, "answer": ans, "closed": f"{conn}; {closed}", "pipelined": "",
            "rss": f"{mib(r0)} → {mib(r1)} MiB{per}" + (f"; {mib(r['rss_after_close'])} MiB 2 s after the client closed them" if r.get("rss_after_close") else ""), "cpu": w.cpu_pct(), "healthz": w.healthz(), "notes": extra}


def probe_partial_head(agent: Agent, args) -> dict:
    agent.restart()  # a fresh agent: RSS of this probe alone
    n = args.connections
    payload = f"POST {LIVE} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: appl".encode()
    r = hold(agent, n, payload, args.hold_seconds)
    return hold_row("partial-head", f"{n} conns: `POST {LIVE} HTTP/1.1␍␊Host: …␍␊Content-Type: appl`, then nothing", r, args.hold_seconds)


def probe_slow_body(agent: Agent, args) -> dict:
    agent.restart()
    n = 200
    payload = f"POST {LIVE} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n".encode() + b'{"a":"'
    r = hold(agent, n, payload, args.hold_seconds, drip=b"x")
    return hold_row("slow-body", f"{n} conns: full head, `Content-Length: 500`, then 1 byte/s", r, args.hold_seconds)


def probe_fd_limit(agent: Agent, args) -> dict:
    n = 300
    agent.restart(nofile=256)
    try:
        r = hold(agent, n, None, args.hold_seconds, client_close_watch=20.0)
        row = hold_row("fd-limit", f"agent under nofile 256:256; {n} conns opened, nothing sent", r, args.hold_seconds)
        died = agent.check("fd-limit")
        if died:
            row["notes"] += "; " + died
    finally:
        agent.stop()
        agent.start()
    return row


def request_row(name: str, sent: str, ex: Exchange, pipelined: str = "", notes: str = "") -> dict:
    r = ex.first()
    ans = r.short() if r else ("no answer" + (f" (got {len(ex.raw)} unparsed bytes)" if ex.raw else ""))
    if r:
        ans += "; JSON error body: " + ("yes" if r.json_error else "no")
    closed = (f"closed by server after {ex.closed_after:.2f} s" + (f" ({ex.error})" if ex.error else "")) if ex.closed else "left open"
    return {"probe": name, "sent": sent, "answer": ans, "closed": closed, "pipelined": pipelined,
            "rss": "", "cpu": "", "healthz": "", "notes": notes}


def probe_connect(agent: Agent, args) -> dict:
    req = b"CONNECT /webhooks/piopiy HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    follow = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with connect(agent.port) as s:
        t0 = time.monotonic()
        s.sendall(req + follow)
        ex = read_exchange(s, want=2, timeout=3.0, linger=1.0, t0=t0)
    fin = finals(ex.resps)
    piped = ("answered: " + fin[1].status_line if len(fin) >= 2
             else f"not answered (connection closed after {ex.closed_after:.2f} s)" if ex.closed else "not answered within 4 s")
    if len(fin) == 1 and fin[0].framing == "to-close" and b"HTTP/1." in fin[0].body:
        piped = "a second response is inside the first one's unframed body"
    # second connection: GET only after the answer
    with connect(agent.port) as s:
        t0 = time.monotonic()
        s.sendall(req)
        ex1 = read_exchange(s, want=1, timeout=3.0, linger=0.3, t0=t0)
        after = "connection closed before it could be sent"
        if not ex1.closed:
            try:
                s.sendall(follow)
                ex2 = read_exchange(s, want=1, timeout=3.0, linger=0.0)
                r2 = ex2.first()
                after = f"answered: {r2.status_line}" if r2 else "not answered within 3 s"
            except OSError as e:
                after = f"send failed ({e})"
    return request_row("connect", "`CONNECT /webhooks/piopiy` + `GET /healthz` in one write", ex,
                       pipelined=piped, notes=f"GET sent after the CONNECT answer (2nd conn): {after}")


def probe_te_gzip(agent: Agent, args) -> dict:
    req = post(headers=["Transfer-Encoding: gzip, chunked"], payload=chunked(body()))
    with connect(agent.port) as s:
        t0 = time.monotonic()
        s.sendall(req + b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        ex = read_exchange(s, want=2, timeout=3.0, linger=1.0, t0=t0)
    fin = finals(ex.resps)
    r = ex.first()
    stored = ""
    if r and r.code == 200 and isinstance(r.json(), dict) and "id" in r.json():
        stored = "stored (id in the answer): a coding it does not decode was accepted"
    piped = ("answered: " + fin[1].status_line if len(fin) >= 2
             else f"not answered (connection closed after {ex.closed_after:.2f} s)" if ex.closed else "not answered within 4 s")
    return request_row("te-gzip", "`Transfer-Encoding: gzip, chunked`, plain chunked JSON body, + `GET /healthz`", ex,
                       pipelined=piped, notes=stored)


def probe_expect(agent: Agent, args) -> dict:
    b = body()
    head = post(headers=[f"Content-Length: {len(b)}", "Expect: 100-continue"], payload=b"")
    with connect(agent.port) as s:
        t0 = time.monotonic()
        s.sendall(head)
        ex = read_exchange(s, want=1, timeout=5.0, linger=0.5, t0=t0)  # 100 is not final: waits 5 s
        got100 = [r for r in ex.resps if r.code == 100]
        early = finals(ex.resps)
        parts = []
        parts.append("`100 Continue` received" if got100 else "no `100 Continue` within 5 s")
        parts.append(f"final before the body: {early[0].short()}" if early else "no final status before the body")
        final_after = None
        if not ex.closed and not early:
            try:
                s.sendall(b)
                ex2 = read_exchange(s, want=1, timeout=5.0, linger=0.5)
                final_after = ex2.first()
                parts.append("after sending the body at 5 s: " + (final_after.short() if final_after else "no answer in 5 s"))
            except OSError as e:
                parts.append(f"sending the body failed ({e})")
    row = request_row("expect-100", "`Expect: 100-continue`, `Content-Length`, body withheld 5 s", ex, notes="")
    row["answer"] = "; ".join(parts)
    if ex.closed:
        row["closed"] = f"closed by server after {ex.closed_after:.2f} s"
    return row


def probe_valid(agent: Agent, args) -> dict:
    with connect(agent.port) as s:
        t0 = time.monotonic()
        s.sendall(post())
        ex = read_exchange(s, want=1, timeout=5.0, linger=0.5, t0=t0)
    r = ex.first()
    d = r.json() if r else None
    ok = bool(r and r.code == 200 and isinstance(d, dict) and isinstance(d.get("id"), str) and d.get("duplicate") is False)
    return request_row("valid", f"valid webhook POST ({FIXTURE_NAME}, fresh cmiuuid)", ex,
                       notes="holds: 200 with {id, duplicate:false}" if ok else "DOES NOT HOLD: expected 200 {id, duplicate:false}")


def probe_pipelined(agent: Agent, args) -> dict:
    a, b = body(), body()
    with connect(agent.port) as s:
        t0 = time.monotonic()
        s.sendall(post(payload=a) + post(payload=b))
        ex = read_exchange(s, want=2, timeout=5.0, linger=0.5, t0=t0)
    fin = finals(ex.resps)
    with connect(agent.port) as s:
        s.sendall(post(payload=b))
        again = read_exchange(s, want=1, timeout=5.0, linger=0.0).first()
    id_b = (again.json() or {}).get("id") if again else None
    ids = [(r.json() or {}).get("id") if isinstance(r.json(), dict) else None for r in fin]
    codes = [r.code for r in fin]
    if len(fin) >= 2 and codes[:2] == [200, 200] and id_b and ids[1] == id_b and ids[0] != id_b:
        verdict = "holds: both 200, in order (2nd id = id of B, learnt by re-sending B: duplicate:true)"
    else:
        verdict = f"DOES NOT HOLD: statuses {codes}, ids {ids}, id of B {id_b}"
    row = request_row("pipelined", "two valid webhook POSTs A, B in one write", ex, notes=verdict)
    row["pipelined"] = f"{len(fin)} answers: {', '.join(r.status_line for r in fin)}"
    return row


def probe_deep_json(agent: Agent, args) -> dict:
    depth = 10_000
    payload = b'{"a":' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"
    with connect(agent.port) as s:
        t0 = time.monotonic()
        s.sendall(post(payload=payload))
        ex = read_exchange(s, want=1, timeout=10.0, linger=0.5, t0=t0)
    time.sleep(0.5)
    alive = agent.alive()
    try:
        hz = http_get(agent.port, "/healthz", timeout=2.0)[0] if alive else None
    except OSError:
        hz = None
    r = ex.first()
    verdict = "holds" if (r and r.code == 400 and alive and hz == 200) else "DOES NOT HOLD"
    return request_row("deep-json", f"valid-framed POST, JSON nested {depth:,} deep ({len(payload)} bytes)", ex,
                       notes=f"{verdict}: agent {'alive' if alive else 'DEAD'}, /healthz after: {hz}")


# ---------------------------------------------------------------------------------------------
# Parser-level rejects

def rejects() -> list[tuple[str, str, bytes]]:
    """(name, what, raw request). Bodies are valid JSON under at least one reading of the framing,
    so a request the server does accept shows up as 200 (stored) rather than as a JSON error."""
    H = "Host: 127.0.0.1\r\nContent-Type: application/json\r\n"
    P = f"POST {LIVE} HTTP/1.1\r\n"

    def raw(head: str, payload: bytes, start=P) -> bytes:
        return (start + H + head + "\r\n").encode("latin-1") + payload

    out = []
    b = body(); out.append(("cl-plus", f"`Content-Length: +{len(b)}`", raw(f"Content-Length: +{len(b)}\r\n", b)))
    b = body(); out.append(("cl-negative", "`Content-Length: -1`", raw("Content-Length: -1\r\n", b)))
    b = body(); out.append(("cl-list", f"`Content-Length: {len(b)}, {len(b) + 1}`", raw(f"Content-Length: {len(b)}, {len(b) + 1}\r\n", b)))
    b = body(); out.append(("cl-two-differing", f"`Content-Length: {len(b)}` and `Content-Length: {len(b) - 1}`",
                            raw(f"Content-Length: {len(b)}\r\nContent-Length: {len(b) - 1}\r\n", b)))
    b = body(); out.append(("cl-hex", f"`Content-Length: 0x{len(b):x}`", raw(f"Content-Length: 0x{len(b):x}\r\n", b)))
    b = body(); out.append(("cl-huge", "`Content-Length: 99999999999999999999999` (> 2^64)", raw("Content-Length: 99999999999999999999999\r\n", b)))
    b = body(); out.append(("cl-empty", "`Content-Length:` (empty value)", raw("Content-Length:\r\n", b)))
    b = body(); out.append(("cl-and-te", f"`Content-Length: {len(b)}` + `Transfer-Encoding: chunked`",
                            raw(f"Content-Length: {len(chunked(b))}\r\nTransfer-Encoding: chunked\r\n", chunked(b))))
    b = body(); out.append(("te-chunked-identity", "`Transfer-Encoding: chunked, identity`", raw("Transfer-Encoding: chunked, identity\r\n", chunked(b))))
    b = body(); out.append(("te-space-before-colon", "`Transfer-Encoding : chunked`", raw("Transfer-Encoding : chunked\r\n", chunked(b))))
    b = body(); out.append(("te-obs-fold", "`Transfer-Encoding:` folded onto `␣chunked` (obs-fold)", raw("Transfer-Encoding:\r\n chunked\r\n", chunked(b))))
    b = body(); out.append(("te-leading-space-name", "first header line `␣Transfer-Encoding: chunked`",
                            (P + " Transfer-Encoding: chunked\r\n" + H + "\r\n").encode() + chunked(b)))
    b = body(); out.append(("te-vtab", "`Transfer-Encoding: \\x0bchunked`", raw("Transfer-Encoding: \x0bchunked\r\n", chunked(b))))
    b = body(); out.append(("te-http10", "HTTP/1.0 with `Transfer-Encoding: chunked`",
                            raw("Transfer-Encoding: chunked\r\n", chunked(b), start=f"POST {LIVE} HTTP/1.0\r\n")))
    b = body(); out.append(("chunk-non-hex", "chunk size `zz`", raw("Transfer-Encoding: chunked\r\n", b"zz\r\n" + b + b"\r\n0\r\n\r\n")))
    b = body(); out.append(("chunk-0x", f"chunk size `0x{len(b):x}`", raw("Transfer-Encoding: chunked\r\n", b"0x%x\r\n" % len(b) + b + b"\r\n0\r\n\r\n")))
    b = body(); out.append(("chunk-overflow", "chunk size `FFFFFFFFFFFFFFFFFF` (> 2^64)", raw("Transfer-Encoding: chunked\r\n", b"FFFFFFFFFFFFFFFFFF\r\n" + b + b"\r\n0\r\n\r\n")))
    b = body(); out.append(("chunk-missing-crlf", "chunk data not followed by CRLF", raw("Transfer-Encoding: chunked\r\n", b"%x\r\n" % len(b) + b + b"XX0\r\n\r\n")))
    b = body(); out.append(("method-nul", "method `PO\\0ST`", (f"PO\x00ST {LIVE} HTTP/1.1\r\n" + H + f"Content-Length: {len(b)}\r\n\r\n").encode() + b))
    b = body(); out.append(("method-space", "method `PO ST`", (f"PO ST {LIVE} HTTP/1.1\r\n" + H + f"Content-Length: {len(b)}\r\n\r\n").encode() + b))
    b = body(); out.append(("version-bad", "version `HTTP/1.x`", raw(f"Content-Length: {len(b)}\r\n", b, start=f"POST {LIVE} HTTP/1.x\r\n")))
    b = body(); out.append(("bare-lf", "all line ends bare LF", (P + H + f"Content-Length: {len(b)}\r\n\r\n").replace("\r\n", "\n").encode() + b))
    b = body(); out.append(("header-oversized", "one 100 KiB header line", raw("X-Pad: " + "a" * 102400 + f"\r\nContent-Length: {len(b)}\r\n", b)))
    assert len(out) == 23, len(out)
    return out


def probe_rejects(agent: Agent, args) -> tuple[dict, list[dict]]:
    rows = []
    for name, what, raw in rejects():
        try:
            with connect(agent.port) as s:
                t0 = time.monotonic()
                try:
                    s.sendall(raw)
                    err = None
                except OSError as e:
                    err = f"send failed: {errno.errorcode.get(e.errno, e)}"
                ex = read_exchange(s, want=1, timeout=3.0, linger=1.0, t0=t0)
        except OSError as e:
            rows.append({"name": name, "what": what, "status": f"connect failed ({e})", "cl": "", "json": "", "closed": ""})
            continue
        r = ex.first()
        d = r.json() if r else None
        stored = " (stored)" if r and r.code == 200 and isinstance(d, dict) and "id" in d else ""
        rows.append({
            "name": name, "what": what,
            "status": (r.status_line.strip() + stored) if r else ("no answer in 3 s" + (f"; {err}" if err else "")),
            "cl": (r.header("content-length") or "none") if r else "",
            "json": ("yes" if r.json_error else ("no, empty" if not r.body else "no: `" + r.body[:40].decode("utf-8", "replace") + "`")) if r else "",
            "closed": (f"yes, {ex.closed_after:.2f} s" + (f" ({ex.error})" if ex.error else "")) if ex.closed else "no (open 1 s after answer/3 s)",
        })
        if not agent.alive():
            break
    statuses: dict[str, int] = {}
    for x in rows:
        statuses[x["status"]] = statuses.get(x["status"], 0) + 1
    nj = sum(x["json"] == "yes" for x in rows)
    nc = sum(x["closed"].startswith("yes") for x in rows)
    summary = {"probe": "rejects", "sent": f"{len(rows)} parser-level rejects to `{LIVE}` (table below)",
               "answer": "; ".join(f"{v}× {k}" for k, v in sorted(statuses.items(), key=lambda kv: -kv[1])) + f"; JSON error body: {nj}/{len(rows)}",
               "closed": f"{nc}/{len(rows)} closed by server", "pipelined": "", "rss": "", "cpu": "", "healthz": "", "notes": ""}
    return summary, rows


# ---------------------------------------------------------------------------------------------

COLS = [("probe", "probe"), ("sent", "sent"), ("answer", "answer (status, headers, body)"), ("closed", "connection(s)"),
        ("pipelined", "pipelined request after it"), ("rss", "RSS before → end of hold"), ("cpu", "CPU during hold (% of one core)"),
        ("healthz", "/healthz during hold"), ("notes", "notes")]


def md_escape(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def render(rows: list[dict], reject_rows: list[dict]) -> str:
    out = ["| " + " | ".join(h for _, h in COLS) + " |", "|" + "---|" * len(COLS)]
    for r in rows:
        out.append("| " + " | ".join(md_escape(r.get(k, "")) or "" for k, _ in COLS) + " |")
    if reject_rows:
        out += ["", f"Parser-level rejects, each on a new connection to `POST {LIVE}` (answer read for 3 s, then 1 s more to see a close):", "",
                "| # | reject | sent | status | Content-Length | JSON `{\"error\"}` body | closed by server |", "|---|---|---|---|---|---|---|"]
        for i, x in enumerate(reject_rows, 1):
            out.append(f"| {i} | {x['name']} | {md_escape(x['what'])} | {md_escape(x['status'])} | {x['cl']} | {md_escape(x['json'])} | {x['closed']} |")
    return "\n".join(out)


def binary_commit(binary: str) -> str:
    d = os.path.dirname(os.path.abspath(binary))
    try:
        h = subprocess.run(["git", "-C", d, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", d, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=10).stdout.strip()
        return (h + (" (work tree has uncommitted changes)" if dirty else "")) if h else "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", required=True, help="the callrelay executable")
    ap.add_argument("--hold-seconds", type=float, default=None, help="how long slow/partial/idle connections are observed (default 60, 15 with --quick)")
    ap.add_argument("--connections", type=int, default=None, help="connections of the partial-head probe (default 2000, 200 with --quick)")
    ap.add_argument("--quick", action="store_true", help="hold 15 s, 200 partial-head connections")
    ap.add_argument("--only", action="append", default=[], help=f"run only these probes (comma-separated or repeated): {', '.join(ORDER)}")
    ap.add_argument("--out", help="also write the results as markdown to this file")
    args = ap.parse_args()
    args.hold_seconds = args.hold_seconds if args.hold_seconds is not None else (15.0 if args.quick else 60.0)
    args.connections = args.connections if args.connections is not None else (200 if args.quick else 2000)
    only = [x for o in args.only for x in o.split(",") if x]
    unknown = [x for x in only if x not in ORDER]
    if unknown:
        ap.error(f"unknown probe(s) {unknown}; known: {ORDER}")
    selected = only or ORDER

    # the client needs a descriptor per connection (plus slack)
    need = max(args.connections, 300) + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        if hard != resource.RLIM_INFINITY and hard < need:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))  # root may raise the hard limit
        else:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else max(soft, need), hard))
    except (ValueError, OSError) as e:
        log(f"cannot raise the client's RLIMIT_NOFILE to {need}: {e}")
    client_nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if client_nofile < need:
        log(f"warning: client nofile {client_nofile} < {need}: some connections may fail to open")

    started = datetime.datetime.now(datetime.timezone.utc)
    load0 = os.getloadavg()
    agent = Agent(args.binary)

    def on_signal(signo, _frame):
        agent.stop()
        raise SystemExit(130)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    version = subprocess.run([agent.binary, "--version"], capture_output=True, text=True).stdout.strip()
    rows: dict[str, dict] = {}
    reject_rows: list[dict] = []
    probes = {"partial-head": probe_partial_head, "slow-body": probe_slow_body, "fd-limit": probe_fd_limit,
              "connect": probe_connect, "te-gzip": probe_te_gzip, "expect-100": probe_expect, "valid": probe_valid,
              "pipelined": probe_pipelined, "deep-json": probe_deep_json}
    # quick request probes first, then the holds (fd-limit last: it restarts the agent)
    run_order = [p for p in ["valid", "pipelined", "connect", "te-gzip", "expect-100", "rejects", "deep-json",
                             "partial-head", "slow-body", "fd-limit"] if p in selected]
    try:
        agent.start()
        for name in run_order:
            log(f"probe {name}")
            try:
                if name == "rejects":
                    row, reject_rows = probe_rejects(agent, args)
                else:
                    row = probes[name](agent, args)
            except OSError as e:  # e.g. connection refused: the agent is gone
                row = {"probe": name, "sent": "", "answer": f"probe failed: {e!r}", "closed": "", "notes": ""}
            died = agent.check(name)
            if died:
                row["notes"] = (row.get("notes", "") + "; " + died).lstrip("; ")
            rows[name] = row
            log(f"  {row['answer'][:150]} | {row['closed'][:150]}")
            agent.settle()
    finally:
        agent.stop()

    table = render([rows[n] for n in ORDER if n in rows], reject_rows)
    hdr = [f"binary: `{agent.binary}` ({version or 'version unknown'}); git HEAD of its directory: {binary_commit(args.binary)}",
           f"date: {started.strftime('%Y-%m-%d %H:%M UTC')}; host: {os.uname().nodename}, {os.cpu_count()} CPUs, Linux {os.uname().release}",
           f"command: `{' '.join(shlex.quote(a) for a in ['python3', os.path.relpath(sys.argv[0])] + sys.argv[1:])}`",
           f"hold {args.hold_seconds:.0f} s; partial-head connections {args.connections}; agent nofile {agent.default_nofile} (256:256 in fd-limit); client nofile {client_nofile}",
           f"load average at start {load0[0]:.2f}, at end {os.getloadavg()[0]:.2f} (other work on the machine shares its {os.cpu_count()} CPUs)",
           f"agent deaths (crashes): {len(agent.deaths)}; stopped by an outside signal: {len(agent.stopped_outside)}"]
    text = "\n".join(f"- {h}" for h in hdr) + "\n\n" + table + "\n"
    if agent.deaths or agent.stopped_outside:
        text += "\nAgent deaths:\n\n```\n" + "\n\n".join(agent.deaths + agent.stopped_outside) + "\n```\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(f"# callrelay ingest probes\n\n{text}")
        log(f"wrote {args.out}")
    return 1 if agent.deaths else 0


if __name__ == "__main__":
    sys.exit(main())
