"""The durable Python peer: what a PIOPIY user would write from the docs' Flask example, made
durable the obvious way. It is the baseline callrelay is compared with in bench/run.sh.

- Flask app served by gunicorn with threaded workers (`-k gthread -w 2 --threads 32`: 64
  concurrent requests, one SQLite connection per thread, one MQTT client per worker process).
- Each webhook is committed to SQLite (WAL, synchronous=FULL, one transaction per webhook)
  BEFORE the 200 answer; a re-sent event (same id) answers duplicate:true and is not re-published.
- Then it is forwarded with paho-mqtt at QoS 1 (paho's defaults: 20 in flight, unbounded queue;
  while the broker is down paho queues in memory and sends on reconnect). A broker acknowledgement
  marks the row delivered (batched every 0.2 s). At start, one worker re-publishes every row not
  marked delivered (at-least-once across restarts).

Environment: PEER_DB (SQLite file), PEER_MQTT_HOST, PEER_MQTT_PORT, PEER_TOPIC_PREFIX.
Endpoints: POST /webhooks/piopiy[/live|/cdr], GET /readyz, GET /stats (stored/delivered counts).
"""

import fcntl
import hashlib
import json
import os
import re
import sqlite3
import threading
import time

import paho.mqtt.client as mqtt
from flask import Flask, jsonify, request

DB_PATH = os.environ.get("PEER_DB", "peer.sqlite3")
MQTT_HOST = os.environ.get("PEER_MQTT_HOST", "127.0.0.1")
MQTT_PORT = int(os.environ.get("PEER_MQTT_PORT", "1883"))
PREFIX = os.environ.get("PEER_TOPIC_PREFIX", "piopiy")

app = Flask(__name__)
_local = threading.local()


def db() -> sqlite3.Connection:
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = sqlite3.connect(DB_PATH, isolation_level=None, timeout=30, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        _local.conn = conn
    return conn


db().executescript(
    """
    CREATE TABLE IF NOT EXISTS events(
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL UNIQUE,
        topic TEXT NOT NULL,
        payload TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        delivered_at INTEGER
    );
    """
)

# --- MQTT forwarding -----------------------------------------------------------------------------

_lock = threading.Lock()
_pending: dict[int, int] = {}  # mid -> row id
_early: set[int] = set()  # acks that arrived before publish() returned their mid
_done: list[int] = []  # row ids acknowledged, waiting to be marked delivered


def _on_publish(client, userdata, mid, reason_code=None, properties=None):
    with _lock:
        row = _pending.pop(mid, None)
        if row is None:
            _early.add(mid)
        else:
            _done.append(row)


client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"peer-{os.getpid()}", clean_session=True)
client.on_publish = _on_publish
client.reconnect_delay_set(min_delay=0.1, max_delay=1)
client.connect_async(MQTT_HOST, MQTT_PORT, keepalive=30)
client.loop_start()


def forward(row_id: int, topic: str, payload: str) -> None:
    info = client.publish(topic, payload, qos=1)
    with _lock:
        if info.mid in _early:
            _early.discard(info.mid)
            _done.append(row_id)
        else:
            _pending[info.mid] = row_id


def _mark_delivered_forever():
    conn = sqlite3.connect(DB_PATH, isolation_level=None, timeout=30)
    conn.execute("PRAGMA synchronous=FULL")
    while True:
        time.sleep(0.2)
        with _lock:
            rows = _done[:]
            _done.clear()
        if rows:
            now = int(time.time() * 1000)
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("UPDATE events SET delivered_at=? WHERE id=?", [(now, r) for r in rows])
            conn.execute("COMMIT")


threading.Thread(target=_mark_delivered_forever, daemon=True).start()

# Re-publish what a previous run stored but never got acknowledged (one worker does it).
_republish_lock = open(DB_PATH + ".republish.lock", "w")
try:
    fcntl.flock(_republish_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    for row_id, topic, payload in db().execute("SELECT id, topic, payload FROM events WHERE delivered_at IS NULL ORDER BY id"):
        forward(row_id, topic, payload)
except BlockingIOError:
    pass

# --- HTTP ----------------------------------------------------------------------------------------

_SANITIZE = re.compile(r"[^a-z0-9_-]+")
_CDR_FIELDS = ("duration", "start_time", "end_time", "answer_time", "call_rate", "balance")


def level(value) -> str:
    text = _SANITIZE.sub("_", str(value).lower()).strip("_")[:64].strip("_")
    return text or "unknown"


@app.post("/webhooks/piopiy")
@app.post("/webhooks/piopiy/live")
@app.post("/webhooks/piopiy/cdr")
def webhook():
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return jsonify(error="body must be a JSON object"), 400
    path = request.path.rstrip("/")
    if path.endswith("/cdr"):
        kind = "cdr"
    elif path.endswith("/live"):
        kind = "live"
    else:
        kind = "cdr" if any(body.get(f) is not None for f in _CDR_FIELDS) else "live"
    event = level(body.get("status", "unknown"))
    app_id = level(body.get("appid", body.get("app_id", "unknown")))
    call_id = body.get("cmiuuid") or body.get("conversation_uuid")
    key = f"{kind}|{body.get('request_id') or call_id}|{event}|{body.get('time')}"
    event_id = hashlib.blake2b(key.encode(), digest_size=16).hexdigest()
    received_at = int(time.time() * 1000)
    topic = f"{PREFIX}/{app_id}/{kind}/{event}"
    payload = json.dumps(
        {
            "schema": "callrelay.call-event.v1",
            "id": event_id,
            "kind": kind,
            "event": event,
            "app_id": app_id,
            "call_id": call_id,
            "received_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(received_at / 1000)) + f".{received_at % 1000:03d}Z",
            "piopiy": body,
        },
        separators=(",", ":"),
    )
    cur = db().execute(  # autocommit: one transaction, fsynced (synchronous=FULL), per webhook
        "INSERT INTO events(event_id, topic, payload, received_at) VALUES (?, ?, ?, ?) ON CONFLICT(event_id) DO NOTHING",
        (event_id, topic, payload, received_at),
    )
    if cur.rowcount == 0:
        return jsonify(id=event_id, duplicate=True)
    forward(cur.lastrowid, topic, payload)
    return jsonify(id=event_id, duplicate=False)


@app.get("/readyz")
def readyz():
    return jsonify(status="ready")


@app.get("/stats")
def stats():
    stored, delivered = db().execute("SELECT count(*), count(delivered_at) FROM events").fetchone()
    return jsonify(stored=stored, delivered=delivered)
