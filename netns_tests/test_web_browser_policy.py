"""The web UI's central scenario in a real headless Chromium against a real lab: an operator logs
in and adds a policy that drops h1's traffic to h2; h1's ping stops within a second; the policy's
counter on the page rises while h1 pings (without a reload); deleting it in the page brings the
ping back."""

from __future__ import annotations

import pytest

from browserlab import (Pinger, WebUI, browser, click, fill_policy_form, log_in, now, text_of)
from routerlab import wait_until

STOPS_WITHIN = 1.0  # seconds from the click on Save to the last reply
RESUMES_WITHIN = 2.0  # seconds from the click on delete to the first reply again


@pytest.fixture
def ui(policy_lab, tmp_path):
    web = WebUI(policy_lab.config_path, policy_lab.env, tmp_path / "web.log")
    web.createuser("olga", "operator")
    web.start()
    yield web
    web.stop()


def packets(driver, row: str) -> int | None:
    text = text_of(driver, f"#{row} td.packets")
    return int(text) if text and text.strip().isdigit() else None


def test_an_operator_drops_h1_to_h2_in_the_page_and_deletes_it_again(policy_lab, ui, tmp_path):
    lab = policy_lab
    h1 = lab.host(1)
    lab.assert_ping(h1, "10.0.2.2", count=3)
    driver = browser()
    pinger = Pinger(h1, "10.0.2.2", tmp_path / "ping.txt")
    try:
        log_in(driver, ui, "olga")
        wait_until(lambda: len(pinger.replies()) >= 5, timeout=10, message="h1 pings h2 before the policy")

        fill_policy_form(driver, ui, lab.router, "no-h1-h2",
                         {"src": "10.0.1.2/32", "dst": "10.0.2.0/24", "action": "drop", "priority": "300"})
        clicked = now()
        click(driver, "#save")
        wait_until(lambda: driver.current_url.endswith("/policies/"), timeout=15,
                   message=lambda: f"after Save: {driver.current_url}\n{driver.page_source[-2000:]}")
        assert "added policy no-h1-h2" in driver.page_source
        # The ping goes on sending; no reply may come later than a second after the click.
        wait_until(lambda: now() > clicked + STOPS_WITHIN + 1.5, timeout=5)
        replies = pinger.replies()
        last = max(replies)
        print(f"last reply {last - clicked:+.3f} s after Save was clicked")
        assert last - clicked < STOPS_WITHIN, f"replies went on {last - clicked:.3f} s after Save\n{lab.explain()}"

        # The counter on the page (the live table, no reload) rises while h1 pings.
        row = f"policy-{lab.router}-no-h1-h2"
        wait_until(lambda: (text_of(driver, f"#{row} td.state") or "").strip() == "installed", timeout=5,
                   message=lambda: f"not installed on the page: {text_of(driver, '#' + row)}")
        first = wait_until(lambda: packets(driver, row), timeout=10,
                           message=lambda: f"no packets on the page: {text_of(driver, '#' + row)}")
        wait_until(lambda: (packets(driver, row) or 0) > first, timeout=10,
                   message=lambda: f"the counter stays at {first}: {text_of(driver, '#' + row)}")
        print(f"counter on the page: {first} then {packets(driver, row)}")

        deleted = now()
        click(driver, f"#{row} button.delete")
        wait_until(lambda: any(t > deleted for t in pinger.replies()), timeout=10,
                   message=lambda: f"no reply since the delete\n{lab.explain()}")
        back = min(t for t in pinger.replies() if t > deleted)
        print(f"first reply {back - deleted:.3f} s after delete was clicked")
        assert back - deleted < RESUMES_WITHIN
        wait_until(lambda: text_of(driver, f"#{row}") is None, timeout=5, message="the row stays on the page")
        assert "no-h1-h2" not in lab.listed()
        driver.get(ui.url + "/audit/")
        audit = text_of(driver, "#audit")
        assert audit.count("olga (web)") == 2 and f"del{lab.router}/no-h1-h2" in audit.replace(" ", "").replace("\n", "")
    finally:
        pinger.stop()
        driver.quit()
