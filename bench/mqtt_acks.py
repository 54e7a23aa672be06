#!/usr/bin/env python3
"""Black-box cases of issue 10 (acknowledgements that cannot lie), against a callrelay binary and
Debian's mosquitto, each started as a plain process on free loopback ports in a temporary
directory and stopped by PID.

Cases (--only, repeatable; default all):
  acl       mosquitto ACL lets callrelay's (anonymous) client write piopiy/+/live/# only; one CDR
            posted, then `callrelay status` after 25 s: delivered / pending / dead letters and the
            dead letter's reason. Whether a subscriber of piopiy/# ever saw the CDR.
  qos2      mqtt.qos = 2, default max_inflight; the broker is paused (SIGSTOP) while 1,000 unique
            live events are posted, then resumed (SIGCONT); a persistent-session QoS 1 subscriber
            counts distinct ids for up to 60 s. Run with broker persistence off and on.
  bridge    callrelay -> local mosquitto bridged (topic piopiy/# out 1) to a central mosquitto;
            central stopped 20 s while 2,000 webhooks arrive; a persistent subscriber on the central
            broker counts distinct ids for 60 s after the central broker is back. Two local
            configurations: stock (cleansession false, default max_queued_messages 1000) and the
            one of docs/scaling.md (max_queued_messages 0, persistence); the central broker has
            max_queued_messages 0 in both, so only the bridge is measured.
  v5sub     an MQTT 5 subscriber (mosquitto_sub -V mqttv5 -F '%P|%C|%F|%E') prints the user
            properties, content type, payload format and expiry of one live event.

--protocol sets mqtt.protocol ("auto", "5", "3.1.1"; omitted from the config when not given, so a
binary older than the key can be measured). Prints one result line per case; --out appends them.

Usage:
  python3 bench/mqtt_acks.py --binary PATH [--protocol P] [--only CASE] [--label TEXT] [--out FILE]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CDR = os.path.join(ROOT, "Tests/IntegrationTests/Fixtures/piopiy/cdr_in_answered_leg_a.json")


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port: int, seconds: float = 10) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


class Broker:
    def __init__(self, tmp: str, name: str, extra: str = "", persistence: bool = False):
        self.dir = os.path.join(tmp, name)
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o777)
        self.port = free_port()
        self.conf = os.path.join(self.dir, "mosquitto.conf")
        with open(self.conf, "w") as f:
            f.write(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence {'true' if persistence else 'false'}\n"
                    f"persistence_location {self.dir}/\nlog_dest file {self.dir}/mosquitto.log\n{extra}\n")
        self.proc: subprocess.Popen | None = None

    def start(self):
        self.proc = subprocess.Popen(["mosquitto", "-c", self.conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_port(self.port):
            raise SystemExit(f"mosquitto did not start: {open(self.dir + '/mosquitto.log').read()[-500:]}")

    def stop(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


class Agent:
    def __init__(self, binary: str, tmp: str, broker_port: int, protocol: str | None, extra_mqtt: str = ""):
        self.binary = binary
        self.port = free_port()
        self.config = os.path.join(tmp, "callrelay.toml")
        proto = f'protocol = "{protocol}"\n' if protocol else ""
        with open(self.config, "w") as f:
            f.write(f'[http]\nlisten = "127.0.0.1:{self.port}"\n[mqtt]\nhost = "127.0.0.1"\nport = {broker_port}\n'
                    f'client_id = "callrelay-acks"\nreconnect_min_ms = 200\nreconnect_max_ms = 2000\n{proto}{extra_mqtt}'
                    f'[storage]\npath = "{tmp}/outbox.sqlite3"\n')
        self.log = open(os.path.join(tmp, "agent.log"), "w")
        self.proc = subprocess.Popen([binary, "run", "--config", self.config], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit("agent did not start")

    def status(self) -> str:
        return subprocess.run([self.binary, "status", "--config", self.config], capture_output=True, text=True).stdout

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Poster:
    def __init__(self, port: int):
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def post(self, path: str, body: bytes) -> tuple[int, dict]:
        self.c.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        r = self.c.getresponse()
        data = r.read()
        try:
            return r.status, json.loads(data)
        except ValueError:
            return r.status, {}


def live(call: str, n: int) -> bytes:
    return json.dumps({"appid": 2222224, "cmiuuid": call, "conversation_uuid": call, "direction": "outbound", "leg": "a",
                       "status": "out_started", "time": 1_725_942_871_000 + n, "from": 440000000000, "to": 19170000000,
                       "n": n}).encode()


class Subscriber:
    """mosquitto_sub, persistent session, printing payloads; collects distinct ids."""

    def __init__(self, port: int, topic: str, client_id: str, v5: bool = False, fmt: str | None = None):
        args = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-t", topic, "-q", "1", "-i", client_id, "-c"]
        if v5:
            args += ["-V", "mqttv5"]
        if fmt:
            args += ["-F", fmt]
        self.lines: list[str] = []
        self.ids: set[str] = set()
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        threading.Thread(target=self._read, daemon=True).start()
        time.sleep(0.5)

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            try:
                self.ids.add(json.loads(line[line.index("{"):])["id"])
            except (ValueError, KeyError):
                pass

    def wait(self, count: int, seconds: float) -> float:
        start = time.time()
        while time.time() - start < seconds and len(self.ids) < count:
            time.sleep(0.1)
        return time.time() - start

    def stop(self):
        self.proc.terminate()


def case_acl(a, tmp) -> str:
    acl = os.path.join(tmp, "acl")
    with open(acl, "w") as f:
        f.write("topic readwrite piopiy/+/live/#\ntopic readwrite piopiy/agents/#\ntopic read piopiy/#\n")
    os.chmod(tmp, 0o755)
    broker = Broker(tmp, "broker", f"acl_file {acl}")
    broker.start()
    sub = Subscriber(broker.port, "piopiy/#", "acl-sub")
    agent = Agent(a.binary, tmp, broker.port, a.protocol)
    try:
        status, _ = Poster(agent.port).post("/webhooks/piopiy/cdr", open(CDR, "rb").read())
        time.sleep(25)
        st = agent.status()
        pick = [l.strip() for l in st.splitlines() if l.strip().startswith(("delivered", "pending", "dead letters", "agent"))]
        reason = [l.strip() for l in st.splitlines() if "attempts" in l]
        saw = any("/cdr/" in l or '"kind":"cdr"' in l for l in sub.lines)
        return f"acl: POST {status}; status after 25 s: {'; '.join(pick)}; dead letter: {reason[0] if reason else '-'}; subscriber saw the CDR: {saw}"
    finally:
        agent.stop(); sub.stop(); broker.stop()


def case_qos2(a, tmp, persistence: bool) -> str:
    broker = Broker(tmp, "broker", persistence=persistence)
    broker.start()
    sub = Subscriber(broker.port, "piopiy/+/live/#", f"qos2-sub-{persistence}")
    agent = Agent(a.binary, tmp, broker.port, a.protocol, "qos = 2\n")
    try:
        time.sleep(1)
        os.kill(broker.proc.pid, signal.SIGSTOP)
        p = Poster(agent.port)
        ids = set()
        for n in range(1000):
            s, j = p.post("/webhooks/piopiy/live", live(f"qos2-{n % 50}", n))
            if s == 200:
                ids.add(j.get("id"))
        time.sleep(0.5)
        os.kill(broker.proc.pid, signal.SIGCONT)
        took = sub.wait(len(ids), 60)
        got = len(ids & sub.ids)
        # The subscriber may have everything before the last PUBCOMPs: give status up to 10 s.
        deadline = time.time() + 10
        st = agent.status()
        while "pending:     0" not in st and time.time() < deadline:
            time.sleep(0.5)
            st = agent.status()
        pick = [l.strip() for l in st.splitlines() if l.strip().startswith(("delivered", "pending", "agent"))]
        return (f"qos2 (broker persistence {persistence}): answered {len(ids)}, subscriber got {got} in {took:.1f} s, "
                f"lost {len(ids) - got}; {'; '.join(pick)}")
    finally:
        agent.stop(); sub.stop()
        try:
            os.kill(broker.proc.pid, signal.SIGCONT)
        except (ProcessLookupError, AttributeError):
            pass
        broker.stop()


def case_bridge(a, tmp, guide: bool) -> str:
    central = Broker(tmp, "central", "max_queued_messages 0", persistence=True)
    central.start()
    bridge = (f"connection central\naddress 127.0.0.1:{central.port}\ntopic piopiy/# out 1\ncleansession false\n"
              f"clientid gw-bridge\nrestart_timeout 1\n")
    local = Broker(tmp, "local", ("max_queued_messages 0\n" if guide else "") + bridge, persistence=guide)
    local.start()
    sub = Subscriber(central.port, "piopiy/+/live/#", "central-crm")
    agent = Agent(a.binary, tmp, local.port, a.protocol)
    try:
        p = Poster(agent.port)
        s, j = p.post("/webhooks/piopiy/live", live("bridge-probe", 0))
        sub.wait(1, 20)
        central.stop()
        ids = set()
        stopped = time.time()
        for n in range(1, 2001):
            s, j = p.post("/webhooks/piopiy/live", live(f"bridge-{n % 40}", n))
            if s == 200:
                ids.add(j.get("id"))
        time.sleep(max(0, 20 - (time.time() - stopped)))
        central.start()
        took = sub.wait(len(ids) + 1, 60)
        got = len(ids & sub.ids)
        st = agent.status()
        delivered = [l.strip() for l in st.splitlines() if l.strip().startswith("delivered")]
        return (f"bridge ({'docs/scaling.md' if guide else 'stock'} local config): answered {len(ids)}, central subscriber got {got} "
                f"in {took:.1f} s after restart, lost {len(ids) - got}; callrelay {'; '.join(delivered)}")
    finally:
        agent.stop(); sub.stop(); local.stop(); central.stop()


def case_v5sub(a, tmp) -> str:
    broker = Broker(tmp, "broker")
    broker.start()
    sub = Subscriber(broker.port, "piopiy/+/live/#", "v5-sub", v5=True, fmt="%P|%C|%F|%E|%p")
    agent = Agent(a.binary, tmp, broker.port, a.protocol)
    try:
        Poster(agent.port).post("/webhooks/piopiy/live", live("v5-call", 1))
        sub.wait(1, 10)
        line = sub.lines[0] if sub.lines else "(nothing)"
        props = line[: line.find("{")] if "{" in line else line
        return f"v5sub: user properties|content type|payload format|expiry = {props!r}"
    finally:
        agent.stop(); sub.stop(); broker.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--protocol")
    ap.add_argument("--only", action="append")
    ap.add_argument("--label", default="")
    ap.add_argument("--out")
    a = ap.parse_args()
    cases = a.only or ["acl", "qos2", "bridge", "v5sub"]
    results = []
    for case in cases:
        runs = {"acl": [lambda t: case_acl(a, t)], "qos2": [lambda t: case_qos2(a, t, False), lambda t: case_qos2(a, t, True)],
                "bridge": [lambda t: case_bridge(a, t, False), lambda t: case_bridge(a, t, True)],
                "v5sub": [lambda t: case_v5sub(a, t)]}[case]
        for run in runs:
            tmp = tempfile.mkdtemp(prefix="callrelay-acks-")
            os.chmod(tmp, 0o755)  # mosquitto drops root for its own user: it must reach its persistence files
            try:
                line = f"[{a.label or os.path.basename(a.binary)} protocol={a.protocol or '(default)'}] " + run(tmp)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            print(line, flush=True)
            results.append(line)
    if a.out:
        with open(a.out, "a") as f:
            f.write("\n".join(results) + "\n")


if __name__ == "__main__":
    main()
