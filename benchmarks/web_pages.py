"""What the web UI's pages cost to answer on a loaded router: `taprouter web` started on the bench's
config, a viewer logged in over HTTP, and each page (and each live part a page polls) fetched
BENCH_PAGE_REQUESTS times, one after another; the wall time of each, by page. The issue's budget
is 300 ms a page with a full table; this measures, it does not assert."""

from __future__ import annotations

import http.cookiejar
import re
import signal
import socket
import statistics
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

PASSWORD = "bench-viewer-password"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pages(router: str, address: str) -> list[tuple[str, str]]:
    return [("overview", "/"), ("overview, live part", "/?part=1"), ("devices, live part", "/devices/?part=1"),
            ("routing", "/routing/"),
            ("routing, address lookup", f"/routing/?{urllib.parse.urlencode({'router': router, 'address': address})}"),
            ("routing, routes (first 50 of all)", f"/routing/?{urllib.parse.urlencode({'router': router, 'prefix': ''})}"),
            # 20.0.0.0/8: where benchmarks/inject.py's table starts, 65,536 /24s of it
            ("routing, routes in 20.0.0.0/8", f"/routing/?{urllib.parse.urlencode({'router': router, 'prefix': '20.0.0.0/8'})}"),
            ("routing, routes after a cursor", f"/routing/?{urllib.parse.urlencode({'router': router, 'prefix': '', 'after': address.rsplit('.', 1)[0] + '.0/24', 'back': '-'})}"),
            ("policies (first 100)", "/policies/"), ("policies, live part", "/policies/?part=1"),
            ("audit log (first 50)", "/audit/")]


PROBE = """
import sys, time
from taprouter import config
from taprouter.control.client import ControlClient
client = ControlClient(config.load(sys.argv[1]).control.socket)
took = []
for _ in range(2):
    start = time.perf_counter()
    client.get("/v1/status")
    took.append(round((time.perf_counter() - start) * 1000, 1))
print(took)
"""


def _status_twice(config: Path, env: dict) -> list[float]:
    """The daemon's own /v1/status, asked twice straight over its socket: whether a slow first page
    is the daemon's or the web's."""
    import sys
    done = subprocess.run([sys.executable, "-c", PROBE, str(config)], env=env, capture_output=True, text=True,
                          timeout=60)
    return eval(done.stdout.strip()) if done.returncode == 0 else [done.stderr.strip()[-200:]]  # noqa: S307


def measure(taprouter: str, config: Path, env: dict, router: str, address: str, requests: int,
            log_path: Path) -> dict:
    """Each page's wall time in ms (p50, p99, max) and bytes; the budget's verdict is the reader's."""
    made = subprocess.run([taprouter, "web", "createuser", "-c", str(config), "bench-viewer", "--role", "viewer",
                           "--password-stdin"], input=PASSWORD + "\n", text=True, capture_output=True, env=env)
    if made.returncode != 0:
        raise RuntimeError(f"web createuser: {made.stderr.strip()}")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    web = subprocess.Popen([taprouter, "web", "-c", str(config), "--listen", f"127.0.0.1:{port}"], env=env,
                           stdout=open(log_path, "w"), stderr=subprocess.STDOUT)
    try:
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        deadline = time.monotonic() + 60
        while True:
            try:
                login = opener.open(url + "/accounts/login/", timeout=5).read().decode()
                break
            except OSError:
                if web.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"taprouter web did not answer: {log_path.read_text()[-2000:]}")
                time.sleep(0.2)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login).group(1)
        body = urllib.parse.urlencode({"username": "bench-viewer", "password": PASSWORD,
                                       "csrfmiddlewaretoken": token}).encode()
        with opener.open(urllib.request.Request(url + "/accounts/login/", data=body), timeout=10) as answer:
            answer.read()
            if answer.geturl().endswith("/accounts/login/"):
                raise RuntimeError("the bench viewer could not log in")
        probe = _status_twice(config, env)
        figures = {}
        for name, path in pages(router, address):
            times, size = [], 0
            for _ in range(requests):
                start = time.perf_counter()
                with opener.open(url + path, timeout=30) as response:
                    size = len(response.read())
                    if response.geturl() != url + path and "/accounts/login/" in response.geturl():
                        raise RuntimeError(f"{path}: sent to the login page")
                times.append((time.perf_counter() - start) * 1000)
            first = times[0]  # the first of a page may warm caches (Django's, the daemon's): kept apart
            times.sort()
            figures[name] = {"path": path, "requests": requests, "bytes": size, "first_ms": round(first, 1),
                             "p50_ms": round(statistics.median(times), 1),
                             "p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))], 1),
                             "max_ms": round(times[-1], 1)}
        slowest = max(figures.values(), key=lambda f: f["p99_ms"])
        return {"pages": figures, "status_first_second_ms": probe, "slowest_p99_ms": slowest["p99_ms"], "slowest": slowest["path"],
                "budget_ms": 300}
    finally:
        web.send_signal(signal.SIGTERM)
        try:
            web.wait(timeout=15)
        except subprocess.TimeoutExpired:
            web.kill()
            web.wait(timeout=5)
