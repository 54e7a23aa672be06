#!/usr/bin/env python3
"""What HTTPS costs on the webhook listener: the same release binary, the same wrk load (unique
386-byte live events, bench/live-events.lua), plain HTTP vs HTTPS, with a nodelay mosquitto so
the whole path runs (ingest, commit, publish, acknowledgement).

Phases per scheme: keep-alive c16 and c64 (what PIOPIY's HTTP client does), and c16 with a new
connection per request (`Connection: close`: a TCP, and for HTTPS a TLS, handshake per webhook).
Reports req/s, p99, CPU per webhook (the agent's utime+stime / answers). Run by bench/tls.sh."""
import argparse, json, os, re, shutil, signal, socket, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LUA = os.path.join(ROOT, "bench", "live-events.lua")
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def cpu_seconds(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / TICK


def wait_ready(url, cafile, seconds=20):
    end = time.time() + seconds
    while time.time() < end:
        r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", cafile, url], capture_output=True, text=True)
        if r.stdout == "200":
            return
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready")


def wrk(url, conns, duration, close):
    args = ["wrk", "-t2", f"-c{conns}", f"-d{duration}s", "--timeout", "5s", "-s", LUA]
    if close:
        args += ["-H", "Connection: close"]
    out = subprocess.run(args + [url], capture_output=True, text=True).stdout
    m = re.search(r"REQUESTS (\d+) NON2XX (\d+) P50_MS ([\d.]+) P99_MS ([\d.]+) RPS ([\d.]+)", out)
    if not m:
        raise RuntimeError(f"wrk printed no result line:\n{out}")
    return dict(requests=int(m[1]), non2xx=int(m[2]), p50=float(m[3]), p99=float(m[4]), rps=float(m[5]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--out")
    opts = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="callrelay-tls-bench-", dir=os.environ.get("BENCH_TMP", "/tmp"))
    cert, key = f"{tmp}/cert.pem", f"{tmp}/key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    bport = free_port()
    open(f"{tmp}/mosquitto.conf", "w").write(f"listener {bport} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\npersistence false\n")
    broker = subprocess.Popen(["/usr/sbin/mosquitto", "-c", f"{tmp}/mosquitto.conf"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = []
    try:
        for rep in range(opts.reps):
            for scheme in ("http", "https"):
                d = f"{tmp}/{scheme}-{rep}"; os.makedirs(d)
                port = free_port()
                tls = f'tls_cert_file = "{cert}"\ntls_key_file = "{key}"\n' if scheme == "https" else ""
                open(f"{d}/c.toml", "w").write(
                    f'[http]\nlisten = "127.0.0.1:{port}"\n{tls}[mqtt]\nport = {bport}\n[storage]\npath = "{d}/outbox.sqlite3"\n[log]\nlevel = "warning"\n')
                agent = subprocess.Popen([opts.binary, "run", "--config", f"{d}/c.toml"], stderr=open(f"{d}/stderr", "w"))
                base = f"{scheme}://127.0.0.1:{port}"
                wait_ready(base + "/readyz", cert)
                url = base + "/webhooks/piopiy/live"
                wrk(url, 16, 2, False)  # warm-up
                for conns, close in ((16, False), (64, False), (16, True)):
                    c0 = cpu_seconds(agent.pid)
                    w = wrk(url, conns, opts.duration, close)
                    w["cpu_us_per_webhook"] = (cpu_seconds(agent.pid) - c0) / max(1, w["requests"]) * 1e6
                    w.update(scheme=scheme, conns=conns, close=close, rep=rep)
                    rows.append(w)
                    print(json.dumps(w), file=sys.stderr)
                agent.send_signal(signal.SIGTERM); agent.wait(30)
    finally:
        broker.terminate(); broker.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)

    def median(xs):
        xs = sorted(xs); return xs[len(xs) // 2]
    lines = ["| scheme | load | req/s (median) | p99 ms (median) | CPU µs per webhook (median) | non-2xx |", "|---|---|---|---|---|---|"]
    for conns, close in ((16, False), (64, False), (16, True)):
        for scheme in ("http", "https"):
            sel = [r for r in rows if r["scheme"] == scheme and r["conns"] == conns and r["close"] == close]
            load = f"c{conns} " + ("new connection per request" if close else "keep-alive")
            lines.append(f"| {scheme} | {load} | {median([r['rps'] for r in sel]):,.0f} | {median([r['p99'] for r in sel]):.1f} | "
                         f"{median([r['cpu_us_per_webhook'] for r in sel]):.0f} | {sum(r['non2xx'] for r in sel)} |")
    text = "\n".join(lines)
    print(text)
    if opts.out:
        open(opts.out, "w").write(text + "\n")


if __name__ == "__main__":
    main()
