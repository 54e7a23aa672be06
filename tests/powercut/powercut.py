#!/usr/bin/env python3
"""Power-cut harness (issue 11; docs/powercut.md). Run through scripts/powercut.sh.

Each cycle: start callrelay under the power-cut shim (tests/powercut/powercut.c) on the outbox
the previous cut left, measure start -> /readyz 200, check that every webhook answered 200 before
the previous cut is in the outbox and that nothing was set aside as corrupt, then put it under load
(unique live events over several keep-alive connections) with the broker up or down at random, and
cut the power at a random moment: SIGKILL, then the files are replaced by what the shim says a
disk would hold (writes since the last fsync lost, names created or removed since the directory's
last fsync undone, optionally the first sector of the last unsynced write torn in).

At the end the broker is up and the agent runs without the shim until a persistent subscriber has
seen every answered webhook (or 90 s). Last line, exactly:
  cycles N, answered A, lost L, set aside S, max recovery X ms
Exit status 0 when lost and set aside are both 0.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port: int, seconds: float) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.02)
    return False


class Broker:
    def __init__(self, root: str):
        self.dir = os.path.join(root, "broker")
        os.makedirs(self.dir)
        os.chmod(self.dir, 0o777)
        self.port = free_port()
        self.conf = os.path.join(self.dir, "mosquitto.conf")
        with open(self.conf, "w") as f:
            f.write(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                    f"persistence_location {self.dir}/\nmax_queued_messages 0\nlog_dest file {self.dir}/mosquitto.log\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\n")
        self.proc = None

    @property
    def up(self) -> bool:
        return self.proc is not None

    def start(self):
        self.proc = subprocess.Popen(["mosquitto", "-c", self.conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_port(self.port, 10):
            raise SystemExit("powercut: mosquitto did not start")

    def stop(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


class Subscriber:
    def __init__(self, port: int):
        self.ids: set[str] = set()
        self.proc = subprocess.Popen(
            ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-t", "piopiy/+/live/#", "-q", "1", "-c", "-i", "powercut-sub"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                self.ids.add(json.loads(line)["id"])
            except (ValueError, KeyError):
                pass

    def wait_subscribed(self, port: int, seconds: float = 20):
        """Returns once the broker holds the subscription: a probe published to the topic comes back.
        Until then a broker stopped by the first cycle could forget a subscriber that never got its
        SUBSCRIBE in, and what the agent publishes before the subscriber's next connect is dropped."""
        deadline = time.time() + seconds
        while time.time() < deadline:
            subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-t", "piopiy/0/live/probe",
                            "-q", "1", "-m", '{"id": "probe"}'], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.2)
            if "probe" in self.ids:
                return
        raise SystemExit("powercut: the subscriber did not receive its probe in time")

    def stop(self):
        self.proc.terminate()


class Load:
    """Unique live events over `connections` keep-alive connections until stopped; keeps the ids
    answered 200."""

    def __init__(self, port: int, connections: int, first: int):
        self.port = port
        self.answered: list[str] = []
        self.lock = threading.Lock()
        self.stopping = False
        self.counter = first
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(connections)]
        for t in self.threads:
            t.start()

    def _next(self) -> int:
        with self.lock:
            self.counter += 1
            return self.counter

    def _run(self, worker: int):
        c = None
        while not self.stopping:
            n = self._next()
            body = json.dumps({"appid": 4242, "cmiuuid": f"pc-{n // 8}", "leg": "a", "direction": "outbound",
                               "status": "out_started", "time": 1_725_942_871_000 + n, "n": n}).encode()
            try:
                if c is None:
                    c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                c.request("POST", "/webhooks/piopiy/live", body=body, headers={"Content-Type": "application/json"})
                r = c.getresponse()
                data = r.read()
                if r.status == 200:
                    with self.lock:
                        self.answered.append(json.loads(data)["id"])
                else:
                    time.sleep(0.05)
            except (OSError, http.client.HTTPException, ValueError):
                c = None
                time.sleep(0.02)

    def stop(self):
        self.stopping = True
        for t in self.threads:
            t.join(10)


class Agent:
    def __init__(self, a, root: str, broker_port: int):
        self.a = a
        self.root = root
        self.outbox_dir = os.path.join(root, "outbox")
        self.state = os.path.join(root, "durable")
        os.makedirs(self.outbox_dir, exist_ok=True)
        self.port = free_port()
        self.config = os.path.join(root, "callrelay.toml")
        with open(self.config, "w") as f:
            f.write(f'[http]\nlisten = "127.0.0.1:{self.port}"\n[mqtt]\nhost = "127.0.0.1"\nport = {broker_port}\n'
                    f'client_id = "powercut-agent"\nreconnect_min_ms = 100\nreconnect_max_ms = 1000\n'
                    f'[storage]\npath = "{self.outbox_dir}/outbox.sqlite3"\nsynchronous = "{a.synchronous}"\n')
        self.proc = None
        self.log = open(os.path.join(root, "agent.log"), "a")

    def start(self, shim: bool) -> float:
        env = dict(os.environ)
        if shim:
            shutil.rmtree(self.state, ignore_errors=True)
            env.update(LD_PRELOAD=self.a.shim, POWERCUT_DIR=self.outbox_dir, POWERCUT_STATE=self.state)
        started = time.monotonic()
        self.proc = subprocess.Popen([self.a.binary, "run", "--config", self.config], stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = started + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"powercut: the agent exited with {self.proc.returncode} (see {self.root}/agent.log)")
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                c.request("GET", "/readyz")
                if c.getresponse().status == 200:
                    return (time.monotonic() - started) * 1000
            except OSError:
                pass
            time.sleep(0.005)
        raise SystemExit("powercut: the agent did not become ready in 60 s")

    def cut(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def stop(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait(30)
            self.proc = None

    def restore(self, tear: bool):
        """Replaces the outbox directory's files by the durable image."""
        names_file = os.path.join(self.state, "names")
        names = set(open(names_file).read().split()) if os.path.exists(names_file) else set()
        torn = None
        torn_file = os.path.join(self.state, "torn")
        # The shim rewrites the note at every write: the cut may have caught it half written.
        parts = open(torn_file).read().split() if tear and os.path.exists(torn_file) else []
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            name, offset, length = parts
            path = os.path.join(self.outbox_dir, name)
            if name in names and os.path.exists(path):
                with open(path, "rb") as f:
                    f.seek(int(offset))
                    torn = (name, int(offset), f.read(min(int(length), 512)))
        for entry in os.listdir(self.outbox_dir):
            if entry not in names:
                os.unlink(os.path.join(self.outbox_dir, entry))
        for name in names:
            src = os.path.join(self.state, "content", name)
            dst = os.path.join(self.outbox_dir, name)
            if os.path.exists(src):
                shutil.copyfile(src, dst)
            else:
                open(dst, "wb").close()
        if torn:
            with open(os.path.join(self.outbox_dir, torn[0]), "r+b") as f:
                f.seek(torn[1])
                f.write(torn[2])
        # SQLite rebuilds the wal-index; the shim does not model its mmap writes.
        shm = os.path.join(self.outbox_dir, "outbox.sqlite3-shm")
        if os.path.exists(shm):
            os.unlink(shm)

    def stored_ids(self) -> set[str]:
        db = sqlite3.connect(f"file:{self.outbox_dir}/outbox.sqlite3?mode=ro", uri=True, timeout=10)
        try:
            return {row[0] for row in db.execute("SELECT event_id FROM events")}
        finally:
            db.close()

    def set_aside(self) -> int:
        return sum(1 for e in os.listdir(self.outbox_dir) if ".corrupt-" in e and not e.endswith(("-wal", "-shm")))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=10)
    ap.add_argument("--binary", required=True)
    ap.add_argument("--shim", required=True)
    ap.add_argument("--synchronous", default="full", choices=["full", "normal"])
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--min-ms", type=int, default=200, help="shortest load before a cut")
    ap.add_argument("--max-ms", type=int, default=1500, help="longest load before a cut")
    ap.add_argument("--tear", action="store_true", help="tear the first sector of the last unsynced write in")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    a = ap.parse_args()
    seed = a.seed if a.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    root = tempfile.mkdtemp(prefix="callrelay-powercut-")
    # mosquitto started as root runs as the mosquitto user: it must reach its persistence files,
    # or a restarted broker forgets the subscriber's session and what was queued for it.
    os.chmod(root, 0o755)
    print(f"powercut: seed {seed}, work directory {root}, synchronous {a.synchronous}, tear {a.tear}", flush=True)

    # A private copy: a rebuild during a long run must not replace the binary under it.
    binary = os.path.join(root, "callrelay")
    shutil.copy2(a.binary, binary)
    a.binary = binary
    broker = Broker(root)
    broker.start()
    sub = Subscriber(broker.port)
    sub.wait_subscribed(broker.port)
    agent = Agent(a, root, broker.port)
    answered: list[str] = []
    answered_in: dict[str, tuple[int, bool]] = {}
    lost_at_restart: set[str] = set()
    set_aside = 0
    max_recovery = 0.0
    counter = 0
    try:
        for cycle in range(1, a.cycles + 1):
            if rng.random() < 0.3:
                broker.stop() if broker.up else broker.start()
            recovery = agent.start(shim=True)
            max_recovery = max(max_recovery, recovery)
            aside = agent.set_aside()
            set_aside += aside
            if answered:
                missing = set(answered) - agent.stored_ids()
                lost_at_restart |= missing
            load = Load(agent.port, a.connections, counter)
            time.sleep(rng.uniform(a.min_ms, a.max_ms) / 1000)
            agent.cut()
            load.stop()
            counter = load.counter + 1
            answered += load.answered
            for i in load.answered:
                answered_in[i] = (cycle, broker.up)
            agent.restore(tear=a.tear)
            print(f"cycle {cycle}: broker {'up' if broker.up else 'down'}, answered {len(load.answered)}, recovery {recovery:.0f} ms, "
                  f"set aside {aside}, missing after restart {len(lost_at_restart)}", flush=True)

        # Drain: broker up, the agent without the shim, until the subscriber has everything.
        if not broker.up:
            broker.start()
        recovery = agent.start(shim=False)
        max_recovery = max(max_recovery, recovery)
        set_aside += agent.set_aside()
        lost_at_restart |= set(answered) - agent.stored_ids()
        deadline = time.time() + 90
        while time.time() < deadline and not set(answered) <= sub.ids:
            time.sleep(0.2)
        never = set(answered) - sub.ids
    finally:
        agent.stop()
        sub.stop()
        broker.stop()
    lost = len(lost_at_restart | never)
    if lost:
        with open(os.path.join(root, "lost.txt"), "w") as f:
            for i in sorted(lost_at_restart | never, key=lambda i: answered_in.get(i, (0, False))):
                cycle, up = answered_in.get(i, (0, False))
                f.write(f"{i} cycle {cycle} broker {'up' if up else 'down'} {'missing from the outbox' if i in lost_at_restart else 'never published'}\n")
        print(f"powercut: {len(lost_at_restart)} answered webhooks missing from the outbox after a restart, "
              f"{len(never)} never published; work directory kept: {root}", flush=True)
    elif not a.keep:
        shutil.rmtree(root, ignore_errors=True)
    print(f"cycles {a.cycles}, answered {len(answered)}, lost {lost}, set aside {set_aside}, max recovery {max_recovery:.0f} ms")
    sys.exit(0 if lost == 0 and set_aside == 0 else 1)


if __name__ == "__main__":
    main()
