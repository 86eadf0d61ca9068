"""`taprouter web createuser` and `taprouter web`, run as commands: users from the shell, and the
UI served by gunicorn (login page, static files, a login that works), refusing a non-loopback
address without TLS unless told --insecure, and over HTTPS with web.tls."""

from __future__ import annotations

import http.client
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

TAPROUTER = Path(sys.executable).parent / "taprouter"
CONFIG = """\
database: sqlite:///{dir}/web.db
control: {{socket: {dir}/control.sock}}
metrics: {{listen: null}}
{web}
routers:
  r1:
    dpid: 1
    ports:
      1: {{tap: r1-p1, addresses: [10.0.1.1/24]}}
"""


def write(tmp_path: Path, web: str = "") -> Path:
    path = tmp_path / "taprouter.yaml"
    path.write_text(CONFIG.format(dir=tmp_path, web=web))
    return path


def taprouter(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(TAPROUTER), *args], input=stdin if stdin is not None else "",
                          capture_output=True, text=True, timeout=60)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_createuser_reads_stdin_or_generates_a_password_once(tmp_path):
    config = write(tmp_path)
    done = taprouter("web", "createuser", "-c", str(config), "olga", "--role", "operator", "--password-stdin",
                     stdin="olgas-password\n")
    assert done.returncode == 0 and done.stdout == "created user olga (operator)\n", done.stderr
    done = taprouter("web", "createuser", "-c", str(config), "ada", "--role", "admin")  # stdin no terminal
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"created user ada \(admin\)\npassword \(shown once\): \S{12,}\n", done.stdout)
    again = taprouter("web", "createuser", "-c", str(config), "ada", "--role", "viewer")
    assert again.returncode == 2 and "user 'ada' exists already" in again.stderr
    wrong = taprouter("web", "createuser", "-c", str(config), "bob", "--role", "root")
    assert wrong.returncode == 2 and "invalid choice: 'root'" in wrong.stderr
    empty = taprouter("web", "createuser", "-c", str(config), "bob", "--role", "viewer", "--password-stdin")
    assert empty.returncode == 2 and "standard input had no password" in empty.stderr


def test_a_non_loopback_address_without_tls_is_refused(tmp_path):
    config = write(tmp_path)
    done = taprouter("web", "-c", str(config), "--listen", "0.0.0.0:18080")
    assert done.returncode == 2
    assert "0.0.0.0:18080 is not a loopback address and web.tls is not set" in done.stderr
    assert "--insecure" in done.stderr
    done = taprouter("web", "-c", str(write(tmp_path, "web: {listen: 192.0.2.1:8080}")))
    assert done.returncode == 2 and "192.0.2.1:8080 is not a loopback address" in done.stderr


class Served:
    def __init__(self, config: Path, *args: str):
        self.port = free_port()
        self.log = config.parent / "web.log"
        self.proc = subprocess.Popen([str(TAPROUTER), "web", "-c", str(config), "--listen",
                                      f"127.0.0.1:{self.port}", *args], stdout=self.log.open("w"),
                                     stderr=subprocess.STDOUT)

    def wait(self, tls: bool = False) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                self.request("GET", "/accounts/login/", tls=tls)
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"the web UI did not answer: {self.log.read_text()}")

    def request(self, method: str, path: str, body: str | None = None, headers: dict | None = None,
                tls: bool = False) -> http.client.HTTPResponse:
        if tls:
            context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
            conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=10, context=context)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        response.body = response.read()
        conn.close()
        return response

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=15)


def test_the_ui_is_served_by_gunicorn_with_its_static_files_and_a_login_works(tmp_path):
    config = write(tmp_path)
    assert taprouter("web", "createuser", "-c", str(config), "olga", "--role", "operator", "--password-stdin",
                     stdin="olgas-password\n").returncode == 0
    served = Served(config)
    try:
        served.wait()
        page = served.request("GET", "/accounts/login/")
        assert page.status == 200 and b'name="username"' in page.body
        assert "gunicorn" in (page.getheader("Server") or "")
        css = served.request("GET", "/static/web/app.css")
        assert css.status == 200 and b"font" in css.body
        assert served.request("GET", "/policies/").status == 302
        token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.body).group(1).decode()
        cookie = page.getheader("Set-Cookie").split(";")[0]
        login = served.request("POST", "/accounts/login/",
                               f"username=olga&password=olgas-password&csrfmiddlewaretoken={token}",
                               {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie})
        assert login.status == 302 and login.getheader("Location") == "/", login.body[:500]
        session = [c.split(";")[0] for c in login.headers.get_all("Set-Cookie") if c.startswith("sessionid")][0]
        policies = served.request("GET", "/policies/", headers={"Cookie": f"{cookie}; {session}"})
        assert policies.status == 200 and b"Add a policy" in policies.body
        failed = served.request("POST", "/accounts/login/", f"username=olga&password=no&csrfmiddlewaretoken={token}",
                                {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie})
        assert failed.status == 200
    finally:
        assert served.stop() == 0
    assert "failed login for 'olga' from 127.0.0.1" in served.log.read_text()


def test_https_with_web_tls(tmp_path):
    key, cert = tmp_path / "web.key", tmp_path / "web.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)
    config = write(tmp_path, f"web: {{listen: 127.0.0.1:8080, tls: {{cert: {cert}, key: {key}}}}}")
    served = Served(config)
    try:
        served.wait(tls=True)
        page = served.request("GET", "/accounts/login/", tls=True)
        assert page.status == 200 and "Secure" in page.getheader("Set-Cookie")
        with pytest.raises((http.client.HTTPException, OSError)):
            served.request("GET", "/accounts/login/")  # plain HTTP gets no page
    finally:
        served.stop()
