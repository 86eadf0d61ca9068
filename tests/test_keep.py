"""Where the holder and BIRD are started: a systemd scope of their own, a given cgroup, or neither."""

from __future__ import annotations

from pathlib import Path

from taprouter.keep import Placement, placement

UNIT = {"INVOCATION_ID": "0123abcd"}


def test_a_systemd_unit_starts_them_in_a_scope_of_their_own():
    where = placement(UNIT, True, "/usr/bin/systemd-run", "taprouter BIRD of r1")
    assert where.cgroup is None
    assert where.prefix[:2] == ("/usr/bin/systemd-run", "--scope")
    assert "--slice=taprouter.slice" in where.prefix and "--collect" in where.prefix
    assert "--description=taprouter BIRD of r1" in where.prefix
    assert where.prefix[-1] == "--"


def test_not_a_unit_or_no_systemd_changes_nothing():
    assert placement({}, True, "/usr/bin/systemd-run", "x") == Placement()
    assert placement(UNIT, False, "/usr/bin/systemd-run", "x") == Placement()
    assert placement(UNIT, True, None, "x") == Placement()


def test_a_named_cgroup_wins():
    env = {**UNIT, "TAPROUTER_KEEP_CGROUP": "/sys/fs/cgroup/keep"}
    assert placement(env, True, "/usr/bin/systemd-run", "x") == Placement(cgroup=Path("/sys/fs/cgroup/keep"))
