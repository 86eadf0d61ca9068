"""The web UI in a real browser: `taprouter web` run for a lab's config, and headless Chromium
(Debian's chromium and chromium-driver, nothing downloaded) driven by Selenium."""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from routerlab import TAPROUTER, free_tcp_port, wait_until

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PASSWORD = "browser-test-password"


class WebUI:
    """`taprouter web -c CONFIG` on a free loopback port, started and stopped by this test (by PID)."""

    def __init__(self, config: Path, env: dict, log: Path):
        self.config = config
        self.env = env
        self.port = free_tcp_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.proc: subprocess.Popen | None = None

    def createuser(self, name: str, role: str) -> None:
        done = subprocess.run([str(TAPROUTER), "web", "createuser", "-c", str(self.config), name, "--role", role,
                               "--password-stdin"], input=PASSWORD + "\n", capture_output=True, text=True,
                              env=self.env, timeout=60)
        assert done.returncode == 0, done.stderr

    def start(self) -> "WebUI":
        self.proc = subprocess.Popen([str(TAPROUTER), "web", "-c", str(self.config), "--listen",
                                      f"127.0.0.1:{self.port}"], stdout=self.log.open("w"),
                                     stderr=subprocess.STDOUT, env=self.env)

        def answers() -> bool:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/accounts/login/")
                return conn.getresponse().status == 200
            except OSError:
                return False

        wait_until(answers, timeout=30, message=lambda: self.log.read_text())
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)


def browser():
    """A headless Chromium; the caller quits it."""
    if not (os.path.exists(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.fail("the browser tests need Debian's chromium and chromium-driver (make bootstrap installs them)",
                    pytrace=False)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,1000", "--disable-extensions", "--no-first-run"):
        options.add_argument(argument)
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


def log_in(driver, ui: WebUI, name: str, password: str = PASSWORD) -> None:
    from selenium.webdriver.common.by import By

    driver.get(ui.url + "/accounts/login/")
    driver.find_element(By.NAME, "username").send_keys(name)
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.ID, "login").click()
    wait_until(lambda: "/accounts/login/" not in driver.current_url, timeout=10,
               message=lambda: f"still on {driver.current_url}")


def text_of(driver, selector: str) -> str | None:
    """An element's text read in one step (the live parts replace their elements every second)."""
    return driver.execute_script("var e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
                                 selector)


def click(driver, selector: str) -> None:
    assert driver.execute_script("var e = document.querySelector(arguments[0]); if (!e) return false; "
                                 "e.click(); return true;", selector), selector


def fill_policy_form(driver, ui: WebUI, router: str, name: str, fields: dict[str, str]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver.get(ui.url + "/policies/add/")
    Select(driver.find_element(By.ID, "id_router")).select_by_value(router)
    driver.find_element(By.ID, "id_name").send_keys(name)
    for key, value in fields.items():
        if key == "action":
            Select(driver.find_element(By.ID, "id_action")).select_by_value(value)
        else:
            element = driver.find_element(By.ID, f"id_{key}")
            element.clear()
            element.send_keys(value)


def post_from_page(driver, path: str, data: dict[str, str] | None = None) -> int:
    """POST from the page as its own script would (CSRF token and session cookie included): the status."""
    return driver.execute_async_script("""
        var done = arguments[arguments.length - 1];
        var token = (document.cookie.match(/csrftoken=([^;]+)/) || [])[1] || "";
        var body = new URLSearchParams(arguments[1] || {});
        fetch(arguments[0], {method: "POST", credentials: "same-origin", redirect: "manual",
                             headers: {"X-CSRFToken": token}, body: body})
          .then(function (r) { done(r.status); }, function (e) { done(-1); });
    """, path, data or {})


class Pinger:
    """`ping -D -O` from a host, in the background, every 50 ms: when replies came, by their time."""

    def __init__(self, host, address: str, out: Path):
        self.out = out
        self.proc = subprocess.Popen(["ip", "netns", "exec", host.name, "ping", "-n", "-D", "-O", "-i", "0.05",
                                      "-W", "1", address], stdout=out.open("w"), stderr=subprocess.STDOUT)

    def replies(self) -> list[float]:
        found = []
        for line in self.out.read_text().splitlines():
            if line.startswith("[") and " bytes from " in line:
                found.append(float(line[1:line.index("]")]))
        return found

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def now() -> float:
    return time.time()
