#!/usr/bin/env python3
"""What open event streams cost a wallet server in memory, and whether it
gives that memory back once they close.

    scripts/stream-memory.py BINARY [--streams 100] [--reading 50] [--cycles 3] [--writes 300]

Starts BINARY on a fresh database in a temporary folder (loopback, no keys),
then, CYCLES times: opens STREAMS `GET /events` streams (READING of them read
what they are sent, the others never read a byte), makes WRITES top-ups while they are open
(each one an event every stream is sent), reads the server's resident memory
(VmRSS) at its peak, closes every stream and reads it again once the server
has noticed. Prints one line per reading, then a summary line:

    streams=100 idle_kib=... open_peak_kib=... closed_kib=... (last cycle)

Everything runs on this machine's loopback; the server is stopped at the end.
"""

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def threads(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_serving(port, deadline):
    while time.time() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.05)
    sys.exit("the server did not start")


def open_stream(port):
    stream = socket.create_connection(("127.0.0.1", port), timeout=10)
    stream.sendall(
        b"GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
    )
    return stream


def open_streams_count(port):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/metrics")
    for line in connection.getresponse().read().decode().splitlines():
        if line.startswith("wallet_event_streams_open "):
            return int(float(line.split()[1]))
    return -1


def top_up(connection, user, key):
    body = json.dumps({"asset": "GOLD", "amount": 1, "idempotencyKey": key})
    connection.request(
        "POST",
        f"/wallets/{user}/topup",
        body=body,
        headers={"Content-Type": "application/json"},
    )
    response = connection.getresponse()
    response.read()
    if response.status != 201:
        sys.exit(f"a top-up answered {response.status}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--reading", type=int, default=None,
                        help="how many streams read what they are sent (default: half)")
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--writes", type=int, default=300)
    args = parser.parse_args()

    reading = args.streams // 2 if args.reading is None else args.reading
    folder = tempfile.mkdtemp()
    port = free_port()
    server = subprocess.Popen(
        [args.binary, "serve", "--db", f"{folder}/wallet.db", "--bind", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "RUST_LOG": "warn"},
    )
    try:
        wait_until_serving(port, time.time() + 60)
        writer = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        # Warm the read paths once, so the idle figure is a served server's.
        top_up(writer, "warm-up", "warm-up")
        idle = rss_kib(server.pid)
        print(f"idle: rss_kib={idle} threads={threads(server.pid)}")
        peak = closed = idle
        for cycle in range(1, args.cycles + 1):
            streams = [open_stream(port) for _ in range(args.streams)]
            deadline = time.time() + 10
            while open_streams_count(port) < args.streams and time.time() < deadline:
                time.sleep(0.05)
            peak = rss_kib(server.pid)
            for write in range(args.writes):
                top_up(writer, f"user-{write % 10}", f"c{cycle}-w{write}")
                if write % 50 == 49:
                    # READING streams read what they were sent; the others
                    # never read.
                    for stream in streams[:reading]:
                        stream.setblocking(False)
                        try:
                            while stream.recv(1 << 16):
                                pass
                        except BlockingIOError:
                            pass
                    peak = max(peak, rss_kib(server.pid))
            time.sleep(0.5)
            peak = max(peak, rss_kib(server.pid))
            open_threads = threads(server.pid)
            for stream in streams:
                stream.close()
            deadline = time.time() + 10
            while open_streams_count(port) > 0 and time.time() < deadline:
                time.sleep(0.05)
            time.sleep(1)
            closed = rss_kib(server.pid)
            print(
                f"cycle {cycle}: open_peak_rss_kib={peak} threads={open_threads} "
                f"closed_rss_kib={closed} threads={threads(server.pid)}"
            )
        print(
            f"streams={args.streams} idle_kib={idle} open_peak_kib={peak} closed_kib={closed}"
        )
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        subprocess.run(["rm", "-rf", folder], check=False)


if __name__ == "__main__":
    main()
