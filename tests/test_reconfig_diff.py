"""The difference between a running config and a re-read one (reconfig.diff): pure, over Config values."""

from __future__ import annotations

import copy
import ipaddress
from pathlib import Path

from taprouter import config
from taprouter.reconfig import added_summary, applied, diff, removed_summary

PATH = Path("/etc/taprouter/taprouter.yaml")


def base() -> dict:
    return {
        "openflow": {"listen": "127.0.0.1:6653"},
        "routers": {
            "r1": {"dpid": 1, "netns": "r1", "ports": {
                1: {"tap": "r1-p1", "addresses": ["10.0.1.1/24", "2001:db8:1::1/64"]},
                2: {"tap": "r1-p2", "addresses": ["10.0.2.1/24"]}}},
            "r2": {"dpid": 2, "netns": "r2", "ports": {1: {"tap": "r2-p1", "addresses": ["10.1.1.1/24"]}}},
        },
    }


def parsed(data: dict) -> config.Config:
    return config.parse(data, PATH)


def changed(edit) -> tuple[config.Config, config.Config]:
    new = copy.deepcopy(base())
    edit(new)
    return parsed(base()), parsed(new)


def test_same_file_changes_nothing():
    assert diff(parsed(base()), parsed(base())).empty


def test_order_of_addresses_is_no_change():
    old, new = changed(lambda d: d["routers"]["r1"]["ports"][1]["addresses"].reverse())
    assert diff(old, new).empty


def test_port_added_touches_only_its_router():
    def edit(d):
        d["routers"]["r1"]["ports"][3] = {"tap": "r1-p3", "addresses": ["10.0.3.1/24"]}
    old, new = changed(edit)
    change = diff(old, new)
    assert change.restart == ()
    [r1] = change.routers
    assert r1.name == "r1" and [p.number for p in r1.added] == [3] and r1.removed == () and r1.readdressed == ()
    assert r1.summary() == ["router r1: port 3 (r1-p3) added"]
    assert r1.config == new.routers[0]


def test_port_removed():
    old, new = changed(lambda d: d["routers"]["r1"]["ports"].pop(2))
    [r1] = diff(old, new).routers
    assert [p.tap for p in r1.removed] == ["r1-p2"] and r1.added == ()


def test_tap_renamed_is_removed_then_added():
    old, new = changed(lambda d: d["routers"]["r1"]["ports"][2].update(tap="r1-other"))
    [r1] = diff(old, new).routers
    assert [p.tap for p in r1.removed] == ["r1-p2"] and [p.tap for p in r1.added] == ["r1-other"]


def test_addresses_added_and_removed():
    old, new = changed(lambda d: d["routers"]["r1"]["ports"][1].update(addresses=["10.0.1.1/24", "10.9.9.1/24"]))
    [r1] = diff(old, new).routers
    [moved] = r1.readdressed
    assert moved.port.number == 1
    assert moved.added == (ipaddress.ip_interface("10.9.9.1/24"),)
    assert moved.removed == (ipaddress.ip_interface("2001:db8:1::1/64"),)
    assert r1.summary() == ["router r1: port 1 (r1-p1) addresses +10.9.9.1/24, -2001:db8:1::1/64"]


def test_prefix_length_change_is_readdressing():
    old, new = changed(lambda d: d["routers"]["r2"]["ports"][1].update(addresses=["10.1.1.1/16"]))
    [r2] = diff(old, new).routers
    assert [str(a) for a in r2.readdressed[0].added] == ["10.1.1.1/16"]
    assert [str(a) for a in r2.readdressed[0].removed] == ["10.1.1.1/24"]


def test_global_changes_need_a_restart():
    def edit(d):
        d["openflow"]["listen"] = "127.0.0.1:6654"
        d["database"] = "sqlite:////tmp/other.db"
        d["metrics"] = {"listen": "127.0.0.1:9999"}
    old, new = changed(edit)
    restart = diff(old, new).restart
    assert [r.split(":")[0] for r in restart] == ["openflow.listen", "database", "metrics.listen"]


def test_router_moved_needs_a_restart():
    def edit(d):
        d["routers"]["r1"]["dpid"] = 9
        d["routers"]["r1"]["netns"] = "elsewhere"
    old, new = changed(edit)
    change = diff(old, new)
    assert [r.split(":")[0] for r in change.restart] == ["routers.r1.dpid", "routers.r1.netns"]
    assert "needs a restart" in change.restart[0]
    assert change.added == () and change.removed == ()


def test_router_added_and_removed_apply_in_place():
    def edit(d):
        d["routers"].pop("r2")
        d["routers"]["r3"] = {"dpid": 3, "netns": "r3", "ports": {1: {"tap": "r3-p1"}}}
    old, new = changed(edit)
    change = diff(old, new)
    assert change.restart == () and change.routers == () and not change.empty
    assert [r.name for r in change.added] == ["r3"] and change.added[0] == new.routers[1]
    assert [r.name for r in change.removed] == ["r2"] and change.removed[0] == old.routers[1]
    assert added_summary(change.added[0]) == "router r3: added (dpid 0x3, netns r3, 1 port(s))"
    assert removed_summary(change.removed[0]) == "router r2: removed (dpid 0x2, netns r2)"
    assert applied(old, new) is new


def test_router_renamed_is_removed_then_added_with_its_dpid():
    def edit(d):
        d["routers"]["r9"] = d["routers"].pop("r2")
    old, new = changed(edit)
    change = diff(old, new)
    assert change.restart == ()
    assert [(r.name, r.dpid) for r in change.removed] == [("r2", 2)]
    assert [(r.name, r.dpid) for r in change.added] == [("r9", 2)]


def test_one_router_added_or_removed_alone():
    def edit(d):
        d["routers"].pop("r2")
        d["routers"]["r3"] = {"dpid": 3, "netns": "r3", "ports": {1: {"tap": "r3-p1"}}}
        d["routers"]["r1"]["ports"].pop(2)
    old, new = changed(edit)
    only_r3 = diff(old, new, only="r3")
    assert only_r3.restart == () and [r.name for r in only_r3.added] == ["r3"] and only_r3.removed == ()
    assert [r.name for r in applied(old, new, only="r3").routers] == ["r1", "r2", "r3"]
    assert applied(old, new, only="r3").routers[0] == old.routers[0]  # r1's port 2 stays until its turn
    only_r2 = diff(old, new, only="r2")
    assert [r.name for r in only_r2.removed] == ["r2"] and only_r2.added == ()
    assert [r.name for r in applied(old, new, only="r2").routers] == ["r1"]


def test_a_router_added_alone_may_not_take_a_running_routers_dpid_or_netns():
    def edit(d):
        d["routers"]["r9"] = d["routers"].pop("r2")  # renamed: r2 still runs until the whole file is read
    old, new = changed(edit)
    restart = diff(old, new, only="r9").restart
    assert [r.split(":")[0] for r in restart] == ["routers.r9.dpid", "routers.r9.netns"]
    assert "also that of router r2, which runs" in restart[0]


def test_bird_file_changed_needs_a_restart(tmp_path):
    (tmp_path / "a.conf").write_text("")
    (tmp_path / "b.conf").write_text("")
    old_data, new_data = base(), base()
    old_data["routers"]["r1"]["bird"] = {"config": str(tmp_path / "a.conf")}
    new_data["routers"]["r1"]["bird"] = {"config": str(tmp_path / "b.conf")}
    restart = diff(parsed(old_data), parsed(new_data)).restart
    assert [r.split(":")[0] for r in restart] == ["routers.r1.bird"]


def test_only_one_router_looks_at_nothing_else():
    def edit(d):
        d["database"] = "sqlite:////tmp/other.db"
        d["routers"]["r1"]["ports"].pop(2)
        d["routers"]["r2"]["ports"][2] = {"tap": "r2-p2", "addresses": ["10.1.2.1/24"]}
    old, new = changed(edit)
    change = diff(old, new, only="r2")
    assert change.restart == () and [r.name for r in change.routers] == ["r2"]
    running = applied(old, new, only="r2")
    assert running.routers[0] == old.routers[0] and running.routers[1] == new.routers[1]
    assert running.database == old.database
    assert applied(old, new) is new
    assert diff(old, new, only="nope").restart == ("routers.nope: no such router in either file",)
