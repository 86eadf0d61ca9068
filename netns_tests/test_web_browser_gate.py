"""The web UI's gate in a real headless Chromium, with a real daemon behind it: every URL the pages
link to or post to needs a login (crawled as an admin, then visited as a stranger); a viewer's
posts to change URLs get 403 and change nothing; a malformed prefix is a form error, nothing stored."""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

import pytest

from browserlab import WebUI, browser, click, fill_policy_form, log_in, post_from_page, text_of
from routerlab import wait_until


@pytest.fixture
def ui(policy_lab, tmp_path):
    web = WebUI(policy_lab.config_path, policy_lab.env, tmp_path / "web.log")
    for name, role in (("ada", "admin"), ("olga", "operator"), ("vera", "viewer")):
        web.createuser(name, role)
    web.start()
    yield web
    web.stop()


def crawl(driver, ui: WebUI) -> tuple[set[str], set[str]]:
    """Every same-site path the pages link to (GET) and post to (forms), from the overview on."""
    from selenium.webdriver.common.by import By

    seen, posts, todo = set(), set(), ["/"]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        driver.get(ui.url + path)
        for link in driver.find_elements(By.CSS_SELECTOR, "a[href]"):
            target = urlsplit(urljoin(ui.url + path, link.get_attribute("href")))
            if target.netloc == urlsplit(ui.url).netloc and not target.path.startswith("/static/"):
                todo.append(target.path + (f"?{target.query}" if target.query else ""))
        for form in driver.find_elements(By.CSS_SELECTOR, "form[method=post]"):
            posts.add(urlsplit(urljoin(ui.url + path, form.get_attribute("action") or path)).path)
    return seen, posts


def test_every_url_needs_a_login(policy_lab, ui):
    lab = policy_lab
    lab.add("seen", "--dst", "10.0.3.0/24", "--action", "drop")  # so that its edit and delete URLs exist
    admin, stranger = browser(), browser()
    try:
        log_in(admin, ui, "ada")
        pages, posts = crawl(admin, ui)
        assert {"/", "/devices/", "/routing/", "/policies/", "/policies/add/", "/policies/import/",
                "/policies/export/", "/audit/", "/users/", f"/policies/{lab.router}/seen/edit/"} <= pages, pages
        assert {f"/policies/{lab.router}/seen/delete/", "/users/", "/accounts/logout/"} <= posts, posts
        for path in sorted(pages | posts):
            stranger.get(ui.url + path)
            assert urlsplit(stranger.current_url).path == "/accounts/login/", (path, stranger.current_url)
        for path in sorted(posts - {"/accounts/logout/"}):
            stranger.get(ui.url + "/accounts/login/")
            # fetch shows a redirect it was told not to follow as status 0: here, to the login page.
            assert post_from_page(stranger, path) == 0, path
        assert set(lab.listed()) == {"seen"}
    finally:
        admin.quit()
        stranger.quit()


def test_a_viewer_gets_403_on_every_change_and_nothing_changes(policy_lab, ui):
    lab = policy_lab
    lab.add("kept", "--dst", "10.0.3.0/24", "--action", "drop")
    before = lab.listed()["kept"]
    driver = browser()
    try:
        log_in(driver, ui, "vera")
        driver.get(ui.url + "/policies/")
        assert "Add a policy" not in driver.page_source and "delete" not in text_of(driver, "#policies")
        r = lab.router
        for path, data in ((f"/policies/{r}/kept/delete/", {}), (f"/policies/{r}/kept/disable/", {}),
                           (f"/policies/{r}/kept/edit/", {"action": "permit"}),
                           ("/policies/add/", {"router": r, "name": "new", "action": "drop"}),
                           ("/routing/bird/reload/", {}), ("/users/", {"username": "eve", "role": "admin"}),
                           ("/users/olga/", {"do": "disable"})):
            assert post_from_page(driver, path, data) == 403, path
        after = lab.listed()
        assert set(after) == {"kept"} and after["kept"]["enabled"] == before["enabled"] is True
        assert after["kept"]["action"] == "drop"
        driver.get(ui.url + "/users/")
        assert "403" in driver.title or "Forbidden" in driver.page_source
    finally:
        driver.quit()


def test_a_malformed_prefix_is_a_form_error_and_nothing_is_stored(policy_lab, ui):
    lab = policy_lab
    driver = browser()
    try:
        log_in(driver, ui, "olga")
        fill_policy_form(driver, ui, lab.router, "bad-prefix", {"dst": "10.0.2.0/33", "action": "drop"})
        click(driver, "#save")
        wait_until(lambda: text_of(driver, "#id_dst_error"), timeout=10,
                   message=lambda: driver.page_source[-3000:])
        assert "is not an address or prefix" in text_of(driver, "#id_dst_error")
        assert driver.find_element("id", "id_dst").get_attribute("value") == "10.0.2.0/33"  # kept to correct
        assert driver.current_url.endswith("/policies/add/")
        assert "bad-prefix" not in lab.listed()
    finally:
        driver.quit()
