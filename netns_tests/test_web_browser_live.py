"""Two browsers on the web UI of a real lab: a change made in one shows in the other within two
seconds, without a reload (the page's live table), and so does its state from the switch."""

from __future__ import annotations

import pytest

from browserlab import WebUI, browser, click, fill_policy_form, log_in, now, text_of
from routerlab import wait_until

WITHIN = 2.0  # seconds


@pytest.fixture
def ui(policy_lab, tmp_path):
    web = WebUI(policy_lab.config_path, policy_lab.env, tmp_path / "web.log")
    web.createuser("olga", "operator")
    web.createuser("vera", "viewer")
    web.start()
    yield web
    web.stop()


def test_a_second_browser_sees_a_change_within_two_seconds(policy_lab, ui):
    lab = policy_lab
    editor, watcher = browser(), browser()
    try:
        log_in(editor, ui, "olga")
        log_in(watcher, ui, "vera")
        watcher.get(ui.url + "/policies/")
        watcher.execute_script("window.loadedOnce = true;")  # gone if the page reloads
        row = f"#policy-{lab.router}-shared"

        fill_policy_form(editor, ui, lab.router, "shared", {"dst": "10.0.3.0/24", "action": "drop"})
        click(editor, "#save")
        wait_until(lambda: editor.current_url.endswith("/policies/"), timeout=15)
        saved = now()
        wait_until(lambda: text_of(watcher, row), timeout=WITHIN + 1, message="the new row in the other browser")
        added = now() - saved
        wait_until(lambda: "installed" in (text_of(watcher, f"{row} td.state") or ""), timeout=5)

        click(editor, f"{row} button.delete")
        wait_until(lambda: editor.current_url.endswith("/policies/") and text_of(editor, row) is None, timeout=15)
        deleted_at = now()
        wait_until(lambda: text_of(watcher, row) is None, timeout=WITHIN + 1, message="the row gone in the other")
        deleted = now() - deleted_at
        print(f"the other browser saw the add after {added:.2f} s, the delete after {deleted:.2f} s")
        assert added <= WITHIN and deleted <= WITHIN
        assert watcher.execute_script("return window.loadedOnce === true;")  # never reloaded
    finally:
        editor.quit()
        watcher.quit()
