"""VLAN sub-interfaces in the config: what is read, and every refusal with its exact message."""

from __future__ import annotations

import copy
import ipaddress

import pytest

from taprouter import config
from taprouter.config import ConfigError, PortConfig, VlanConfig
from taprouter.configvlan import PortTap


def good() -> dict:
    return {
        "routers": {
            "r1": {
                "dpid": 1,
                "ports": {
                    1: {"tap": "r1-p1", "addresses": ["10.0.1.1/24"],
                        "vlans": {100: {"tap": "r1-p1.100", "addresses": ["10.100.0.1/24", "2001:db8:100::1/64"]},
                                  200: {"tap": "r1-p1.200", "addresses": ["10.200.0.1/24"]}}},
                    2: {"vlans": {300: {"tap": "r1-p2.300", "addresses": ["10.30.0.1/24"]}}},
                    3: {"tap": "r1-p3", "addresses": ["10.0.3.1/24"]},
                },
            },
        },
    }


def vlans(data: dict, port: int) -> dict:
    return data["routers"]["r1"]["ports"][port]["vlans"]


def test_vlans_are_read_sorted_with_their_taps(tmp_path):
    parsed = config.parse(good(), tmp_path / "c.yaml")
    p1, p2, p3 = parsed.routers[0].ports
    assert p1.vlans == (VlanConfig(100, "r1-p1.100", (ipaddress.ip_interface("10.100.0.1/24"),
                                                     ipaddress.ip_interface("2001:db8:100::1/64"))),
                        VlanConfig(200, "r1-p1.200", (ipaddress.ip_interface("10.200.0.1/24"),)))
    assert p2.tap is None and p2.addresses == () and [v.vid for v in p2.vlans] == [300]
    assert p3.vlans == ()  # a port without VLANs is what it always was
    assert p3 == PortConfig(3, "r1-p3", (ipaddress.ip_interface("10.0.3.1/24"),))
    assert [(t.number, t.vid, t.tap) for t in parsed.routers[0].taps] == [
        (1, 0, "r1-p1"), (1, 100, "r1-p1.100"), (1, 200, "r1-p1.200"), (2, 300, "r1-p2.300"), (3, 0, "r1-p3")]
    assert PortTap(1, 100, "x", ()).label == "port 1 VLAN 100"


def test_string_vid_is_read_as_its_number(tmp_path):
    data = good()
    vlans(data, 2)["400"] = {"tap": "r1-p2.400"}
    parsed = config.parse(data, tmp_path / "c.yaml")
    assert [v.vid for v in parsed.routers[0].ports[1].vlans] == [300, 400]


def _set(port: int, vid, value):
    def edit(d):
        vlans(d, port)[vid] = value
    return edit


P1 = "routers.r1.ports.1"
# (id, edit, key, the exact problem)
BAD = [
    ("vid-0", _set(1, 0, {"tap": "a"}), f"{P1}.vlans.0", "VLAN ids must be integers in 1..4094, not 0"),
    ("vid-4095", _set(1, 4095, {"tap": "a"}), f"{P1}.vlans.4095", "VLAN ids must be integers in 1..4094, not 4095"),
    ("vid-negative", _set(1, -1, {"tap": "a"}), f"{P1}.vlans.-1", "VLAN ids must be integers in 1..4094, not -1"),
    ("vid-text", _set(1, "blue", {"tap": "a"}), f"{P1}.vlans.blue",
     "VLAN ids must be integers in 1..4094, not 'blue'"),
    ("vid-float", _set(1, 1.5, {"tap": "a"}), f"{P1}.vlans.1.5", "VLAN ids must be integers in 1..4094, not 1.5"),
    ("vid-bool", _set(1, True, {"tap": "a"}), f"{P1}.vlans.True",
     "VLAN ids must be integers in 1..4094, not True"),
    ("vid-twice", _set(1, "100", {"tap": "r1-p1.x"}), f"{P1}.vlans.100", "VLAN 100 is given twice"),
    ("vlan-tap-missing", _set(1, 5, {"addresses": []}), f"{P1}.vlans.5.tap", "is required: the TAP interface name"),
    ("vlan-tap-long", _set(1, 5, {"tap": "a" * 16}), f"{P1}.vlans.5.tap",
     f"'{'a' * 16}' is longer than Linux's 15-character limit"),
    ("vlan-not-mapping", _set(1, 5, "r1-p1.5"), f"{P1}.vlans.5", "must be a mapping with 'tap' and 'addresses'"),
    ("vlan-unknown-key", _set(1, 5, {"tap": "r1-p1.5", "pcp": 3}), f"{P1}.vlans.5.pcp",
     "unknown key (allowed: addresses, tap)"),
    ("vlans-not-mapping", lambda d: d["routers"]["r1"]["ports"][1].update(vlans=[100]), f"{P1}.vlans",
     "must be a mapping of VLAN id to {tap, addresses}"),
    ("tap-reused-port-vlan", _set(1, 5, {"tap": "r1-p3"}), "routers.r1.ports.3.tap",
     "'r1-p3' is also the TAP of port 1 VLAN 5"),
    ("tap-reused-vlan-vlan", _set(1, 5, {"tap": "r1-p2.300"}), "routers.r1.ports.2.vlans.300.tap",
     "'r1-p2.300' is also the TAP of port 1 VLAN 5"),
    ("tap-reused-same-port", _set(1, 5, {"tap": "r1-p1"}), f"{P1}.vlans.5.tap", "'r1-p1' is also the TAP of port 1"),
    ("address-reused", _set(1, 5, {"tap": "r1-p1.5", "addresses": ["10.30.0.1/24"]}),
     "routers.r1.ports.2.vlans.300.addresses", "10.30.0.1 is also an address of port 1 VLAN 5"),
    ("subnet-overlap-vlans", _set(1, 5, {"tap": "r1-p1.5", "addresses": ["10.100.0.2/16"]}),
     f"{P1}.vlans.100.addresses",
     "10.100.0.1/24 overlaps 10.100.0.2/16 of port 1 VLAN 5: one routing table cannot reach a subnet through two "
     "ports"),
    ("subnet-overlap-untagged", _set(2, 5, {"tap": "r1-p2.5", "addresses": ["10.0.3.9/24"]}),
     "routers.r1.ports.3.addresses",
     "10.0.3.1/24 overlaps 10.0.3.9/24 of port 2 VLAN 5: one routing table cannot reach a subnet through two ports"),
    ("untagged-addresses-without-tap", lambda d: d["routers"]["r1"]["ports"][2].update(addresses=["10.9.0.1/24"]),
     "routers.r1.ports.2.addresses", "untagged addresses need the port's own 'tap'"),
    ("no-tap-no-vlans", lambda d: d["routers"]["r1"]["ports"][2].update(vlans={}), "routers.r1.ports.2.tap",
     "is required: the TAP interface name"),
]


@pytest.mark.parametrize("edit,key,problem", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_refused_with_key_and_exact_message(tmp_path, edit, key, problem):
    data = copy.deepcopy(good())
    edit(data)
    path = tmp_path / "c.yaml"
    with pytest.raises(ConfigError) as info:
        config.parse(data, path)
    assert info.value.problems == [f"{path}: {key}: {problem}"]


def test_yaml_file_with_vlans_loads_and_duplicate_vid_keys_are_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("routers:\n  r1:\n    dpid: 1\n    ports:\n      1:\n        vlans:\n"
                    "          100: {tap: r1-p1.100, addresses: [10.100.0.1/24]}\n")
    assert config.load(path).routers[0].ports[0].vlans[0].tap == "r1-p1.100"
    path.write_text("routers:\n  r1:\n    dpid: 1\n    ports:\n      1:\n        vlans:\n"
                    "          100: {tap: a}\n          100: {tap: b}\n")
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert len(info.value.problems) == 1 and "vlans" in info.value.problems[0], info.value.problems


def test_check_counts_vlans(tmp_path, capsys):
    from taprouter import cli

    path = tmp_path / "c.yaml"
    path.write_text("routers:\n  r1:\n    dpid: 1\n    ports:\n      1:\n        tap: r1-p1\n        vlans:\n"
                    "          100: {tap: r1-p1.100}\n          200: {tap: r1-p1.200}\n")
    assert cli.main(["check", "-c", str(path)]) == 0
    assert capsys.readouterr().out == f"{path}: OK (1 router(s), 1 port(s), 2 VLAN(s))\n"
