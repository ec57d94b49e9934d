"""The Bookinfo modules as real processes (`python -m ...`) wired together on loopback."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

MODULE = "meshlet.e2e.apps.bookinfo."


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def wait_healthy(url: str, proc: subprocess.Popen[bytes], deadline_s: float = 30.0) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args} exited with {proc.returncode}")
        try:
            if fetch(url)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} not healthy within {deadline_s}s")


@pytest.fixture
def bookinfo_processes() -> Iterator[str]:
    ports = {name: free_port() for name in ("details", "ratings", "reviews", "productpage")}
    urls = {f"{name.upper()}_URL": f"http://127.0.0.1:{port}" for name, port in ports.items()}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for name, port in ports.items():
            env = dict(os.environ, BOOKINFO_HOST="127.0.0.1", BOOKINFO_PORT=str(port), POD_NAME=f"{name}-pod",
                       SERVICE_VERSION="v3" if name == "reviews" else "v1", **urls)
            proc = subprocess.Popen([sys.executable, "-m", MODULE + name], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(proc)
        for proc, port in zip(procs, ports.values()):
            wait_healthy(f"http://127.0.0.1:{port}/health", proc)
        yield f"http://127.0.0.1:{ports['productpage']}"
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert all(p.returncode == 0 for p in procs), [p.returncode for p in procs]


def test_processes_serve_bookinfo(bookinfo_processes: str) -> None:
    status, body = fetch(f"{bookinfo_processes}/api/v1/products/0/reviews", {"end-user": "jason"})
    assert status == 200
    reviews = json.loads(body)
    assert reviews["podname"] == "reviews-pod" and reviews["version"] == "v3"
    assert reviews["reviews"][0]["rating"] == {"stars": 5, "color": "red"}
    status, html = fetch(f"{bookinfo_processes}/productpage")
    assert status == 200
    assert "Book Details" in html and "Book Reviews" in html and '<font color="red">' in html


def test_bad_port_env_exits_with_clear_error() -> None:
    env = dict(os.environ, BOOKINFO_PORT="nope")
    proc = subprocess.run([sys.executable, "-m", MODULE + "details"], env=env, capture_output=True, timeout=30,
                          check=False)
    assert proc.returncode == 2
    assert b"BOOKINFO_PORT must be an integer" in proc.stderr
