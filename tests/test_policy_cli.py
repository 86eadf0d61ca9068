"""`taprouter policy ...` on both backends: the contract's flags and JSON, errors as `error: FIELD:
message` with exit 2 and nothing stored, and the daemon told of each change (or noted absent)."""

from __future__ import annotations

import http.server
import json
import socketserver
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from policyhelp import open_store, write_config
from taprouter import cli

CONTRACT = {"router", "name", "priority", "match", "action", "state", "error", "packets", "bytes"}


@pytest.fixture
def run(tmp_path, database_url, capsys):
    path = write_config(tmp_path, database_url)

    def run(*argv: str) -> tuple[int, str, str]:
        verb, *rest = argv
        code = cli.main(["policy", verb, "-c", str(path), *rest])
        out = capsys.readouterr()
        return code, out.out, out.err

    run.config = path
    return run


class _Daemon(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def daemon(tmp_path):
    """A stand-in for the daemon's control socket: records each POST, answers with `reply`."""
    state = {"posts": [], "reply": (200, {"ok": True})}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state["posts"].append((self.path, json.loads(body)))
            status, reply = state["reply"]
            data = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = _Daemon(str(tmp_path / "control.sock"), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def listed(run) -> list[dict]:
    code, out, _ = run("list", "--json")
    assert code == 0
    return json.loads(out)


def test_add_list_show_set_disable_enable_del(run):
    code, out, err = run("add", "--router", "r1", "--name", "web", "--action", "permit", "--dst", "10.0.2.0/24",
                         "--proto", "tcp", "--dport", "80-443", "--priority", "200", "--to-router",
                         "--comment", "the web")
    assert code == 0 and "added policy web" in out
    assert "the daemon is not running" in err and "reads the policies when it starts" in err
    [item] = listed(run)
    assert CONTRACT <= item.keys()
    assert {k: item[k] for k in CONTRACT} == {
        "router": "r1", "name": "web", "priority": 200, "action": "permit", "state": "pending", "error": None,
        "match": {"dst": "10.0.2.0/24", "proto": "tcp", "dport": "80-443"}, "packets": 0, "bytes": 0}
    assert item["to_router"] is True and item["comment"] == "the web"
    code, out, _ = run("show", "--router", "r1", "--name", "web")
    assert code == 0 and "routed traffic and traffic to the router" in out and "pending" in out
    code, out, _ = run("show", "--router", "r1", "--name", "web", "--json")
    assert json.loads(out) == item
    assert run("set", "--router", "r1", "--name", "web", "--dport", "", "--to-router", "no")[0] == 0
    [item] = listed(run)
    assert item["match"] == {"dst": "10.0.2.0/24", "proto": "tcp"} and item["to_router"] is False
    assert run("disable", "--router", "r1", "--name", "web")[0] == 0
    assert listed(run)[0]["state"] == "disabled"
    code, out, _ = run("disable", "--router", "r1", "--name", "web")
    assert code == 0 and "was disabled already" in out
    assert run("enable", "--router", "r1", "--name", "web")[0] == 0
    assert listed(run)[0]["state"] == "pending"
    code, out, _ = run("list")
    assert out.splitlines()[0].split() == ["ROUTER", "NAME", "PRIO", "ACTION", "MATCH", "STATE", "PACKETS", "BYTES"]
    assert out.splitlines()[1].split()[:4] == ["r1", "web", "200", "permit"]
    assert run("del", "--router", "r1", "--name", "web")[0] == 0
    assert listed(run) == []


@pytest.mark.parametrize("flags, field", [
    (["--action", "drop", "--dport", "443-80", "--proto", "tcp"], "dport"),
    (["--action", "drop", "--dst", "10.0.0.1/8"], "dst"),
    (["--action", "drop", "--router", "r9"], "router"),
    (["--action", "forward", "--via", "10.9.9.9"], "via"),
    (["--action", "drop", "--dst", "10.5.0.0/24"], "priority"),
    (["--action", "drop", "--name", "taken"], "name"),
    (["--dst", "10.8.0.0/16"], "action"),
    (["--action", "drop", "--disabled", "maybe"], "disabled"),
])
def test_a_refusal_prints_the_field_exits_2_and_stores_nothing(run, flags, field):
    assert run("add", "--router", "r1", "--name", "taken", "--action", "drop", "--dst", "10.5.0.0/16")[0] == 0
    before = listed(run)
    # argparse keeps the last --router and --name given, so the flags may replace them
    code, out, err = run("add", "--router", "r1", "--name", "new", *flags)
    assert code == 2 and out == ""
    assert err.startswith(f"error: {field}: ") and err.count("\n") == 1
    assert listed(run) == before


def test_a_missing_policy_is_an_error(run):
    for verb in ("set", "enable", "disable", "del", "show"):
        code, _, err = run(verb, "--router", "r1", "--name", "nobody")
        assert code == 2 and err.startswith("error: name: router r1 has no policy 'nobody'")


def test_the_daemon_is_told_what_changed(run, daemon):
    assert run("add", "--router", "r1", "--name", "a", "--action", "drop")[:1] == (0,)
    assert run("set", "--router", "r1", "--name", "a", "--priority", "7")[0] == 0
    assert run("set", "--router", "r1", "--name", "a", "--priority", "7")[0] == 0  # no change, nothing told
    assert run("del", "--router", "r1", "--name", "a")[0] == 0
    # Each with the store's generation before and after its write: one row, one move.
    assert [(path, body["router"], body["names"]) for path, body in daemon["posts"]] == \
        [("/v1/policies/changed", "r1", ["a"])] * 3
    moves = [body["generations"] for _, body in daemon["posts"]]
    assert all(after == before + 1 for before, after in moves)
    assert moves[1][0] >= moves[0][1] and moves[2][0] >= moves[1][1]
    daemon["reply"] = (503, {"error": "the planner is restarting"})
    code, out, err = run("add", "--router", "r1", "--name", "b", "--action", "drop")
    assert code == 0 and "added policy b" in out
    assert err.startswith("warning: the daemon did not take the change (the planner is restarting)")
    assert [i["name"] for i in listed(run)] == ["b"]


def test_export_and_import_through_the_command_line(run, tmp_path, daemon):
    run("add", "--router", "r1", "--name", "a", "--action", "drop", "--dst", "10.1.0.0/16")
    run("add", "--router", "r2", "--name", "b", "--action", "permit", "--in-port", "1")
    code, text, _ = run("export")
    assert code == 0 and text.startswith("# taprouter policies")
    assert run("export", "--router", "r2")[1].count("- name:") == 1
    path = tmp_path / "p.yaml"
    path.write_text(text.replace("10.1.0.0/16", "10.2.0.0/16") + "  - {name: c, action: drop, dst: 10.3.0.0/16, priority: 50}\n")
    daemon["posts"].clear()
    code, out, _ = run("import", str(path), "--dry-run")
    assert code == 0 and out.splitlines() == ["+ r2 c", "~ r1 a", "import --dry-run: 1 would add, 1 would change, "
                                                               "0 would delete"]
    assert daemon["posts"] == [] and run("export")[1] == text
    code, out, _ = run("import", str(path))
    assert code == 0 and out.splitlines()[-1] == "import: 1 added, 1 changed, 0 deleted"
    assert sorted(body["router"] for _, body in daemon["posts"]) == ["r1", "r2"]
    # One transaction for both routers: its generations go with the last notification only.
    assert [("generations" in body) for _, body in daemon["posts"]] == [False, True]
    path.write_text("policies:\n  r1:\n  - {name: x, action: drop, sport: 5}\n")
    code, out, err = run("import", str(path))
    assert code == 2 and err.startswith("error: policies.r1[0].sport: needs --proto")


def test_the_installed_command(tmp_path, database_url):
    """The entry point as a shell runs it: exit codes and output streams."""
    path = write_config(tmp_path, database_url)
    taprouter = Path(sys.executable).with_name("taprouter")
    bad = subprocess.run([taprouter, "policy", "add", "-c", path, "--router", "r1", "--name", "x", "--action",
                          "drop", "--sport", "22"], capture_output=True, text=True, timeout=60)
    assert (bad.returncode, bad.stdout) == (2, "") and bad.stderr.startswith("error: sport: ")
    good = subprocess.run([taprouter, "policy", "add", "-c", path, "--router", "r1", "--name", "x", "--action",
                           "drop"], capture_output=True, text=True, timeout=60)
    assert good.returncode == 0 and "note: the daemon is not running" in good.stderr
    assert [p.name for p in open_store(tmp_path, database_url).policies()] == ["x"]
