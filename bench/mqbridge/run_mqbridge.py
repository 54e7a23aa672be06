#!/usr/bin/env python3
"""Run mq-bridge (PyPI mq-bridge-basic) as a benchmark peer: HTTP in -> MQTT out.

One mq-bridge route, no handler code:

    input:  http  listening on 127.0.0.1:<--http-port>, any path, method POST
    output: mqtt  tcp://127.0.0.1:<--broker-port>, topic <--topic>, qos <--qos>

A POSTed body is published unchanged as the MQTT payload.  The HTTP answer
is sent once the route has committed the message, i.e. after the MQTT output
reported success (for QoS 1: after the broker's PUBACK).  See README.md.

Runs in the foreground until SIGTERM/SIGINT.  Prints exactly one line
`ready` on stdout once the HTTP port accepts TCP connections (the launcher
polls the port itself after Route.start()), so a caller may either wait for
that line or poll the port.
"""
import argparse
import json
import os
import signal
import socket
import sys
import threading
import time

import mq_bridge


def build_config(args):
    mqtt = {
        "url": f"tcp://{args.broker_host}:{args.broker_port}",
        "topic": args.topic,
        "qos": args.qos,
        "client_id": args.client_id,
        "protocol": args.protocol,
    }
    http = {"url": f"{args.http_host}:{args.http_port}"}
    if args.method:
        http["method"] = args.method  # other methods get 405, nothing published
    return {
        "input": {"http": http},
        "output": {"mqtt": mqtt},
    }


def wait_port(host, port, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--http-port", type=int, required=True)
    p.add_argument("--http-host", default="127.0.0.1")
    p.add_argument("--broker-port", type=int, default=1883)
    p.add_argument("--broker-host", default="127.0.0.1")
    p.add_argument("--topic", default="bench/mqbridge")
    p.add_argument("--qos", type=int, default=1, choices=(0, 1, 2))
    p.add_argument("--client-id", default=f"mqbridge-bench-{os.getpid()}")
    p.add_argument("--protocol", default="v5", choices=("v5", "v3"))
    p.add_argument("--method", default="POST",
                   help="only this HTTP method is published (others: 405); '' = any")
    p.add_argument("--log", default=None,
                   help="mq-bridge log level to stderr (e.g. info, debug); default off")
    p.add_argument("--print-config", action="store_true",
                   help="print the route config as JSON to stderr")
    args = p.parse_args()

    if args.log:
        import logging
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
        mq_bridge.init_logging(args.log)

    config = build_config(args)
    if args.print_config:
        print(json.dumps(config, indent=2), file=sys.stderr)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    route = mq_bridge.Route.from_config(config, "http_to_mqtt")
    route.start()  # config / connection errors raise here
    try:
        if not wait_port(args.http_host, args.http_port, 10.0):
            print("mq-bridge: HTTP port did not open", file=sys.stderr)
            return 1
        print("ready", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        route.stop()
        route.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
