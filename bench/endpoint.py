"""The participant schedule endpoint under loopback load: `trialcoord serve` (uvicorn) in a subprocess on a
free 127.0.0.1 port, against a temporary SQLite database holding the demo study; an asyncio client with 32
concurrent connections runs 3,000 requests (or 15 s, whichever comes first) against /health, then against
GET /api/studies/DEMO-001/participants/101-002/schedule. Goal: schedule req/s >= 0.25x /health.

The client runs on the same machine and takes CPU from the server, httpx more than the server's /health
handler does; so it runs twice: with httpx, then with a bare HTTP/1.1 client whose /health figure is close
to what the server itself does. With `wrk` installed, its figures are printed as well.
Run: `.venv/bin/python -m bench.endpoint [--quick]`.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from urllib.parse import urlsplit

import httpx

CONNECTIONS = 32
HEALTH = "/health"
SCHEDULE = "/api/studies/DEMO-001/participants/101-002/schedule"  # the demo's longest history
TOKEN: dict[str, str] = {}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def served_demo():
    """The app with the demo study, served on loopback; yields its base URL."""
    with tempfile.TemporaryDirectory(prefix="trialcoord-bench-") as tmp:
        env = {**os.environ, "TRIALCOORD_DATA_DIR": tmp, "TRIALCOORD_DATABASE_URL": f"sqlite:///{tmp}/bench.sqlite3"}
        cli = [sys.executable, "-m", "trialcoord.cli.main"]
        subprocess.run([*cli, "demo"], env=env, check=True, stdout=subprocess.DEVNULL)
        # Every request carries a bearer token, as a real client's does: the guard's work is measured too.
        subprocess.run(
            [*cli, "user", "create", "bench", "--name", "Bench", "--email", "bench@example.org", "--generate"],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        subprocess.run(
            [*cli, "user", "grant", "bench", "monitor", "--study", "DEMO-001"],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        issued = subprocess.run(
            [*cli, "user", "token", "bench", "--days", "1"], env=env, check=True, capture_output=True, text=True
        )
        TOKEN["value"] = issued.stdout.strip().splitlines()[-1]
        port = free_port()
        server = subprocess.Popen(
            [*cli, "serve", "--host", "127.0.0.1", "--port", str(port)], env=env, stdout=subprocess.DEVNULL
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until_up(base + HEALTH, server)
            yield base
        finally:
            server.terminate()
            server.wait(timeout=10)


def wait_until_up(url: str, server: subprocess.Popen, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with status {server.returncode}")
        try:
            if httpx.get(url, timeout=1, trust_env=False).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {seconds} s")


class HttpxConnection:
    """One httpx client per connection: a shared client's pool costs more than the server at 32 connections."""

    def __init__(self, url: str):
        self.url, self.client = (
            url,
            httpx.AsyncClient(
                limits=httpx.Limits(max_connections=1),
                timeout=30,
                trust_env=False,  # no proxy for loopback
                headers={"Authorization": f"Bearer {TOKEN['value']}"},
            ),
        )

    async def get(self) -> int:
        return (await self.client.get(self.url)).status_code

    async def close(self) -> None:
        await self.client.aclose()


class RawConnection:
    """A bare HTTP/1.1 keep-alive connection on asyncio streams: about the least a client can spend."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        self.address, self.streams = (parts.hostname, parts.port), None
        self.request = (
            f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {TOKEN['value']}\r\n\r\n"
        ).encode()

    async def get(self) -> int:
        if self.streams is None:
            self.streams = await asyncio.open_connection(*self.address)
        reader, writer = self.streams
        writer.write(self.request)
        head = await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", head).group(1)))
        return int(head.split(b" ", 2)[1])

    async def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()


async def load(url: str, client, requests: int, seconds: float) -> tuple[float, list[float], int]:
    """(req/s, latencies in s, non-200 answers) of `requests` GETs over CONNECTIONS connections."""
    connections = [client(url) for _ in range(CONNECTIONS)]
    latencies: list[float] = []
    errors, remaining = 0, requests

    async def worker(connection):
        nonlocal remaining, errors
        while remaining > 0 and time.perf_counter() < deadline:
            remaining -= 1
            sent = time.perf_counter()
            status = await connection.get()
            latencies.append(time.perf_counter() - sent)
            errors += status != 200

    try:
        await asyncio.gather(*(connection.get() for connection in connections))  # connect and warm up
        began = time.perf_counter()
        deadline = began + seconds
        await asyncio.gather(*(worker(connection) for connection in connections))
        elapsed = time.perf_counter() - began
    finally:
        for connection in connections:
            await connection.close()
    return len(latencies) / elapsed, latencies, errors


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def wrk(url: str, seconds: int) -> None:
    result = subprocess.run(
        ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", url],
        capture_output=True,
        text=True,
        check=False,
    )
    for line in result.stdout.splitlines():
        if line.strip().startswith(("Requests/sec", "50%", "99%")):
            print(f"    wrk {line.strip()}")


def main(quick: bool = False) -> None:
    requests, seconds = (300, 1.5) if quick else (3_000, 15.0)
    print(
        f"endpoint: {CONNECTIONS} connections over loopback, {requests:,} requests or {seconds:g} s per run"
        " (SQLite, demo data)"
    )
    with served_demo() as base:
        for name, client in (("httpx", HttpxConnection), ("raw asyncio", RawConnection)):
            rates = {}
            for path in (HEALTH, SCHEDULE):
                rate, latencies, errors = asyncio.run(load(base + path, client, requests, seconds))
                rates[path] = rate
                p50, p99 = percentile(latencies, 0.5) * 1e3, percentile(latencies, 0.99) * 1e3
                print(
                    f"  {name:<11}  GET {path}\n{'':15}{len(latencies):6,} requests  {rate:7.1f} req/s"
                    f"  p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  non-200: {errors}"
                )
            ratio = rates[SCHEDULE] / rates[HEALTH]
            verdict = "met" if ratio >= 0.25 else "MISSED"
            print(f"  {name}: schedule/health ratio {ratio:.3f}x (goal >= 0.25x) {verdict}")
        if shutil.which("wrk"):
            for path in (HEALTH, SCHEDULE):
                print(f"  wrk  GET {path}")
                wrk(base + path, max(1, int(seconds)))


if __name__ == "__main__":
    main("--quick" in sys.argv[1:])
