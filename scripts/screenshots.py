#!/usr/bin/env python3
"""Screenshots of the web UI's real pages, taken with Debian's headless Chromium (Selenium):
`scripts/screenshots.py URL USER PASSWORD DIR [ROUTER ADDRESS]`. `make demo` runs it when
DEMO_SCREENSHOTS names a directory; docs/screenshots/ holds the ones the README shows."""

from __future__ import annotations

import sys
import time
from pathlib import Path

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
PAGES = (("overview", "/"), ("devices", "/devices/"), ("policies", "/policies/"), ("audit", "/audit/"),
         ("users", "/users/"))


def main(url: str, user: str, password: str, out: str, router: str | None = None,
         address: str | None = None) -> int:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,800", "--hide-scrollbars"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        driver.get(url + "/accounts/login/")
        driver.save_screenshot(str(folder / "login.png"))
        driver.find_element(By.NAME, "username").send_keys(user)
        driver.find_element(By.NAME, "password").send_keys(password)
        driver.find_element(By.ID, "login").click()
        time.sleep(1)
        pages = list(PAGES)
        if router and address:
            pages.append(("routing", f"/routing/?router={router}&address={address}"))
        for name, path in pages:
            driver.get(url + path)
            time.sleep(1.5)  # one refresh of the live part, so its figures are the latest
            driver.save_screenshot(str(folder / f"{name}.png"))
            print(f"screenshot: {folder / (name + '.png')}")
    finally:
        driver.quit()
    return 0


if __name__ == "__main__":
    if len(sys.argv) not in (5, 7):
        sys.exit(__doc__)
    sys.exit(main(*sys.argv[1:]))
