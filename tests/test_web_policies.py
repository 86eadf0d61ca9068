"""The Policies pages with Django's test client, on a real SQLite store and a real control server
(an in-memory daemon behind it): each change is stored, audited in the web user's name, and told
to the daemon as the CLI tells it; a refused field is named on the form and nothing is stored."""

from __future__ import annotations

import pytest
import yaml

import webhelp
from fakedaemon import FakeDaemon, router_status
from taprouter.control.server import ControlServer
from taprouter.db import models


@pytest.fixture
def daemon():
    return FakeDaemon(routers={"r1": router_status("r1"), "r2": router_status("r2")})


@pytest.fixture
def web(tmp_path, daemon):
    socket = tmp_path / "run" / "control.sock"
    server = ControlServer(socket, daemon, group=None)
    server.start()
    config = webhelp.use(webhelp.write_config(tmp_path, socket))
    yield config
    server.stop()


def told(daemon) -> list[tuple]:
    return [c[:3] for c in daemon.calls if c[0] == "policies_changed"]


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


DROP = {"router": "r1", "name": "no-h2", "priority": "200", "src": "10.0.1.0/24", "dst": "10.0.2.0/24",
        "proto": "icmp", "action": "drop", "enabled": "on", "comment": "test"}


def test_add_stores_audits_and_tells_the_daemon(web, daemon):
    operator = webhelp.client("olga", "operator")
    response = operator.post("/policies/add/", DROP, follow=True)
    assert response.status_code == 200
    assert "router r1: added policy no-h2" in messages_of(response)
    row = models.Policy.objects.get(router="r1", name="no-h2")
    assert (row.priority, row.src, row.dst, row.proto, row.action, row.enabled, row.comment) == \
        (200, "10.0.1.0/24", "10.0.2.0/24", 1, "drop", True, "test")
    assert told(daemon) == [("policies_changed", "r1", ["no-h2"])]
    entry = models.AuditEntry.objects.get()
    assert (entry.who, entry.action, entry.router, entry.name, entry.before) == \
        ("olga (web)", "add", "r1", "no-h2", None)
    assert entry.after["dst"] == "10.0.2.0/24"


@pytest.mark.parametrize("field, value, words", [
    ("src", "10.0.1.0/33", "is not an address or prefix"),
    ("dst", "not-a-prefix", "is not an address or prefix"),
    ("priority", "1000", "is not in 0..999"),
    ("dport", "70000", ""),
    ("name", "-bad", "is not a policy name"),
    ("via", "10.0.2.9", ""),  # drop takes no next hop
])
def test_a_malformed_field_is_named_on_the_form_and_nothing_is_stored(web, daemon, field, value, words):
    operator = webhelp.client("olga", "operator")
    response = operator.post("/policies/add/", {**DROP, field: value})
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert list(errors) == [field], errors
    assert words in " ".join(errors[field])
    assert models.Policy.objects.count() == 0 and models.AuditEntry.objects.count() == 0
    assert told(daemon) == []


def test_a_name_taken_is_a_name_error(web):
    operator = webhelp.client("olga", "operator")
    assert operator.post("/policies/add/", DROP).status_code == 302
    response = operator.post("/policies/add/", DROP)
    assert response.status_code == 400 and "already a policy" in " ".join(response.context["form"].errors["name"])


def test_edit_changes_only_what_the_form_changed(web, daemon):
    operator = webhelp.client("olga", "operator")
    operator.post("/policies/add/", DROP)
    page = operator.get("/policies/r1/no-h2/edit/")
    assert page.status_code == 200
    form = page.context["form"]
    assert form.initial["dst"] == "10.0.2.0/24" and form.initial["proto"] == "icmp"
    response = operator.post("/policies/r1/no-h2/edit/", {**DROP, "router": "r2", "name": "other",
                                                           "dst": "10.0.3.0/24"}, follow=True)
    assert "router r1: changed policy no-h2" in messages_of(response)
    row = models.Policy.objects.get()
    assert (row.router, row.name, row.dst, row.src) == ("r1", "no-h2", "10.0.3.0/24", "10.0.1.0/24")
    audit = models.AuditEntry.objects.order_by("id").last()
    assert audit.action == "set" and audit.before["dst"] == "10.0.2.0/24" and audit.after["dst"] == "10.0.3.0/24"
    assert told(daemon)[-1] == ("policies_changed", "r1", ["no-h2"])
    # The same form again changes nothing, and the daemon is not told.
    calls = len(told(daemon))
    response = operator.post("/policies/r1/no-h2/edit/", {**DROP, "dst": "10.0.3.0/24"}, follow=True)
    assert "router r1: policy no-h2 unchanged" in messages_of(response) and len(told(daemon)) == calls
    # A field emptied is unset.
    operator.post("/policies/r1/no-h2/edit/", {**DROP, "dst": "10.0.3.0/24", "src": ""})
    assert models.Policy.objects.get().src is None


def test_edit_refuses_a_bad_field_and_keeps_the_policy(web):
    operator = webhelp.client("olga", "operator")
    operator.post("/policies/add/", DROP)
    response = operator.post("/policies/r1/no-h2/edit/", {**DROP, "sport": "99999"})
    assert response.status_code == 400 and list(response.context["form"].errors) == ["sport"]
    assert models.Policy.objects.get().sport is None


def test_edit_of_a_policy_that_is_not_there_is_404(web):
    assert webhelp.client("olga", "operator").get("/policies/r1/nothing/edit/").status_code == 404


def test_disable_enable_delete(web, daemon):
    operator = webhelp.client("olga", "operator")
    operator.post("/policies/add/", DROP)
    assert operator.get("/policies/r1/no-h2/disable/").status_code == 405  # a change is a POST
    operator.post("/policies/r1/no-h2/disable/")
    assert models.Policy.objects.get().enabled is False
    response = operator.post("/policies/r1/no-h2/disable/", follow=True)
    assert "router r1: policy no-h2 was disabled already" in messages_of(response)
    operator.post("/policies/r1/no-h2/enable/")
    assert models.Policy.objects.get().enabled is True
    response = operator.post("/policies/r1/no-h2/delete/", follow=True)
    assert "router r1: deleted policy no-h2" in messages_of(response)
    assert models.Policy.objects.count() == 0
    assert [a for a in models.AuditEntry.objects.order_by("id").values_list("action", flat=True)] == \
        ["add", "disable", "enable", "del"]
    assert [c[1:] for c in told(daemon)] == [("r1", ["no-h2"])] * 4
    response = operator.post("/policies/r1/no-h2/delete/", follow=True)
    assert any("has no policy" in m for m in messages_of(response))


def test_the_list_shows_the_state_and_counters_the_daemon_wrote(web, daemon):
    from datetime import datetime, timezone

    from taprouter.policy.model import State, Status
    from taprouter.web import context

    operator = webhelp.client("olga", "operator")
    operator.post("/policies/add/", {**DROP, "name": "web"})
    operator.post("/policies/add/", {**DROP, "name": "quiet", "priority": "100", "dst": "10.0.9.0/24"})
    operator.post("/policies/add/", {**DROP, "name": "off", "priority": "50", "dst": "10.0.8.0/24"})
    operator.post("/policies/r1/off/disable/")
    ids = dict(models.Policy.objects.values_list("name", "id"))
    store = context.store(operator.get("/").wsgi_request)
    # What the daemon's policy source writes back (the same store call).
    store.write_statuses([Status(ids["web"], State.INSTALLED, "", datetime.now(timezone.utc), None, 5, 500)])
    for url in ("/policies/", "/policies/?part=1"):
        rows = {p["name"]: p for p in operator.get(url).context["policies"]}
        assert (rows["web"]["state"], rows["web"]["packets"], rows["web"]["bytes"]) == ("installed", 5, 500)
        assert (rows["quiet"]["state"], rows["quiet"]["packets"]) == ("pending", 0)
        assert rows["off"]["state"] == "disabled"
    store.write_statuses([Status(ids["web"], State.INSTALLED, "", None, None, 7, 700),
                          Status(ids["quiet"], State.FAILED, "OFPBAC_BAD_OUT_PORT", None, None, 0, 0)])
    part = operator.get("/policies/?part=1").content.decode()
    assert "<html" not in part
    web_row = part.split('id="policy-r1-web"')[1].split("</tr>")[0]
    assert '<td class="num packets">7</td>' in web_row
    quiet_row = part.split('id="policy-r1-quiet"')[1].split("</tr>")[0]
    assert "failed" in quiet_row and "OFPBAC_BAD_OUT_PORT" in quiet_row


def test_a_row_plain_sql_made_wrong_is_listed_as_failed(web):
    from django.db import connection

    operator = webhelp.client("olga", "operator")
    operator.post("/policies/add/", DROP)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE taprouter_policy SET dst = '10.0.2.0/99' WHERE name = 'no-h2'")
    [row] = operator.get("/policies/").context["policies"]
    assert row["state"] == "failed" and "dst" in row["error"]


def test_a_daemon_that_is_not_running_is_a_note_and_the_change_is_stored(web, tmp_path):
    from django.conf import settings

    from taprouter import config as config_mod

    (tmp_path / "elsewhere").mkdir()
    settings.TAPROUTER_CONFIG = config_mod.load(webhelp.write_config(tmp_path / "elsewhere", tmp_path / "nobody.sock"))
    operator = webhelp.client("olga", "operator")
    response = operator.post("/policies/add/", DROP, follow=True)
    assert any(m.startswith("note: the daemon is not running") for m in messages_of(response))
    assert models.Policy.objects.filter(name="no-h2").exists()
    assert operator.get("/policies/").status_code == 200


def test_export_then_import(web, daemon, tmp_path):
    operator = webhelp.client("olga", "operator")
    operator.post("/policies/add/", DROP)
    exported = operator.get("/policies/export/")
    assert exported.status_code == 200 and exported["Content-Type"].startswith("application/yaml")
    document = yaml.safe_load(exported.content)
    assert document["policies"]["r1"][0]["name"] == "no-h2"
    document["policies"]["r1"].append({"name": "telnet", "dst": "10.0.2.0/24", "proto": "tcp", "dport": 23,
                                       "action": "drop"})
    upload = tmp_path / "policies.yaml"
    upload.write_text(yaml.safe_dump(document))
    with upload.open("rb") as f:
        response = operator.post("/policies/import/", {"file": f, "dry_run": "1"}, follow=True)
    assert "import: 1 would add, 0 would change, 0 would delete" in messages_of(response)
    assert not models.Policy.objects.filter(name="telnet").exists()
    with upload.open("rb") as f:
        response = operator.post("/policies/import/", {"file": f}, follow=True)
    assert "import: 1 added, 0 changed, 0 deleted" in messages_of(response)
    assert models.Policy.objects.filter(name="telnet", dport="23").exists()
    assert told(daemon)[-1] == ("policies_changed", "r1", ["telnet"])
    assert models.AuditEntry.objects.filter(action="import", name="telnet", who="olga (web)").exists()


def test_an_import_that_is_wrong_names_the_key_and_changes_nothing(web, tmp_path):
    operator = webhelp.client("olga", "operator")
    upload = tmp_path / "bad.yaml"
    upload.write_text("policies:\n  r1:\n  - name: x\n    dst: 10.0.0.0/99\n    action: drop\n")
    with upload.open("rb") as f:
        response = operator.post("/policies/import/", {"file": f})
    assert response.status_code == 400
    assert "policies.r1[0].dst" in response.content.decode()
    assert models.Policy.objects.count() == 0


def test_the_audit_page_shows_who_changed_what_from_what_to_what(web):
    operator = webhelp.client("olga", "operator")
    operator.post("/policies/add/", DROP)
    operator.post("/policies/r1/no-h2/edit/", {**DROP, "dst": "10.0.3.0/24"})
    viewer = webhelp.client("vera", "viewer")
    page = viewer.get("/audit/")
    text = page.content.decode()
    assert page.status_code == 200 and "olga (web)" in text
    assert "dst: 10.0.2.0/24 → 10.0.3.0/24" in text
    rows = page.context["rows"]
    assert [r["entry"].action for r in rows] == ["set", "add"]  # the newest first
    assert viewer.get("/audit/?who=nobody").context["rows"] == []


def test_the_list_is_paginated_and_reads_only_its_page(web, monkeypatch):
    from taprouter.web import policies

    monkeypatch.setattr(policies, "PER_PAGE", 2)
    operator = webhelp.client("olga", "operator")
    for n in range(5):
        operator.post("/policies/add/", {**DROP, "name": f"p{n}", "priority": str(100 + n),
                                         "dst": f"10.0.{10 + n}.0/24"})
    first = operator.get("/policies/")
    assert [p["name"] for p in first.context["policies"]] == ["p4", "p3"]  # the highest priority first
    assert 'data-live="/policies/?part=1&amp;page=1"' in first.content.decode()
    third = operator.get("/policies/", {"page": 3})
    assert [p["name"] for p in third.context["policies"]] == ["p0"]
    assert 'data-live="/policies/?part=1&amp;page=3"' in third.content.decode()
    part = operator.get("/policies/", {"part": 1, "page": 2})
    assert [p["name"] for p in part.context["policies"]] == ["p2", "p1"]
    assert "Policies 3 to 4 of 5" in part.content.decode()
    assert 'href="?page=1"' in part.content.decode() and 'href="?page=3"' in part.content.decode()
    # A page past the end (its policies deleted since) shows the last one.
    assert [p["name"] for p in operator.get("/policies/", {"page": 9}).context["policies"]] == ["p0"]
    assert [p["name"] for p in operator.get("/policies/", {"page": "x"}).context["policies"]] == ["p4", "p3"]
    # Only the page's rows are parsed.
    from taprouter.policy import store as store_module

    parsed = []
    real = store_module.parse
    monkeypatch.setattr(store_module, "parse", lambda *a, **k: parsed.append(a[1]) or real(*a, **k))
    operator.get("/policies/", {"page": 2})
    assert sorted(parsed) == ["p1", "p2"]
