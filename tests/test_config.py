"""Config validation: every malformed file names the file, the key and the problem."""

from __future__ import annotations

import copy
import ipaddress
import os
from pathlib import Path

import pytest

from taprouter import config
from taprouter.config import (BirdConfig, Config, ConfigError, Listen, PortConfig, RouterConfig)

DESIGN_EXAMPLE = """\
openflow:
  listen: 127.0.0.1:6653          # where switches connect
routers:
  r1:
    dpid: 0x1                     # int or hex string
    netns: r1                     # TAPs and BIRD live here; created if missing
    ports:
      1: {tap: r1-p1, addresses: [10.0.1.1/24, "2001:db8:1::1/64"]}
      2: {tap: r1-p2, addresses: [10.0.2.1/24]}
    bird:                         # optional
      config: bird/r1.conf        # the user's own BIRD 2 config file
"""


def good() -> dict:
    """A minimal valid config as loaded YAML; each bad case breaks exactly one thing."""
    return {
        "openflow": {"listen": "127.0.0.1:6653"},
        "routers": {
            "r1": {
                "dpid": 1,
                "netns": "r1",
                "ports": {
                    1: {"tap": "r1-p1", "addresses": ["10.0.1.1/24", "2001:db8:1::1/64"]},
                    2: {"tap": "r1-p2", "addresses": ["10.0.2.1/24"]},
                },
            },
        },
    }


def r1(data: dict) -> dict:
    return data["routers"]["r1"]


def port(data: dict, number: int) -> dict:
    return r1(data)["ports"][number]


def set_tap(n: int, value):
    def edit(d):
        port(d, n)["tap"] = value
    return edit


def set_addresses(n: int, value):
    def edit(d):
        port(d, n)["addresses"] = value
    return edit


def set_router(key: str, value):
    def edit(d):
        r1(d)[key] = value
    return edit


def del_router(key: str):
    def edit(d):
        del r1(d)[key]
    return edit


def set_listen(value):
    def edit(d):
        d["openflow"]["listen"] = value
    return edit


def rename_port(old: int, new):
    def edit(d):
        r1(d)["ports"][new] = r1(d)["ports"].pop(old)
    return edit


def add_router(name: str, **overrides):
    def edit(d):
        router = {"dpid": 2, "netns": name, "ports": {1: {"tap": f"{name}-p1", "addresses": []}}}
        router.update(overrides)
        d["routers"][name] = router
    return edit


def compose(*edits):
    def edit(d):
        for e in edits:
            e(d)
    return edit


# (id, edit, key, words the problem must contain)
BAD = [
    ("tap-16-chars", set_tap(1, "a" * 16), "routers.r1.ports.1.tap", ["15-character limit", "a" * 16]),
    ("tap-bad-chars", set_tap(1, "r1/p1"), "routers.r1.ports.1.tap", ["not a valid interface name"]),
    ("tap-dotdot", set_tap(1, ".."), "routers.r1.ports.1.tap", ["not a valid interface name"]),
    ("tap-missing", lambda d: port(d, 1).pop("tap"), "routers.r1.ports.1.tap", ["is required"]),
    ("tap-not-string", set_tap(1, 7), "routers.r1.ports.1.tap", ["must be a name (text), not the number 7"]),
    ("tap-duplicate", set_tap(2, "r1-p1"), "routers.r1.ports.2.tap", ["'r1-p1'", "also the TAP of port 1"]),
    ("cidr-bad-octet", set_addresses(1, ["10.0.1.300/24"]), "routers.r1.ports.1.addresses[0]",
     ["'10.0.1.300/24'", "not a CIDR address"]),
    ("cidr-bad-prefix", set_addresses(1, ["10.0.1.1/33"]), "routers.r1.ports.1.addresses[0]",
     ["not a CIDR address"]),
    ("cidr-no-prefix", set_addresses(1, ["10.0.1.1"]), "routers.r1.ports.1.addresses[0]",
     ["not a CIDR address such as"]),
    ("cidr-second-bad", set_addresses(1, ["10.0.1.1/24", "nonsense/64"]), "routers.r1.ports.1.addresses[1]",
     ["'nonsense/64'"]),
    ("addresses-not-list", set_addresses(1, "10.0.1.1/24"), "routers.r1.ports.1.addresses",
     ["must be a list"]),
    ("address-duplicate", set_addresses(2, ["10.0.1.1/24"]), "routers.r1.ports.2.addresses",
     ["10.0.1.1 is also an address of port 1"]),
    ("address-duplicate-v6-other-prefix", set_addresses(2, ["2001:db8:1::1/128"]),
     "routers.r1.ports.2.addresses", ["2001:db8:1::1 is also an address of port 1"]),
    ("address-network", set_addresses(1, ["10.0.1.0/24"]), "routers.r1.ports.1.addresses[0]",
     ["network or broadcast"]),
    ("address-broadcast", set_addresses(1, ["10.0.1.255/24"]), "routers.r1.ports.1.addresses[0]",
     ["network or broadcast"]),
    ("address-multicast-v4", set_addresses(1, ["224.0.0.5/24"]), "routers.r1.ports.1.addresses[0]",
     ["cannot be a router interface address"]),
    ("address-multicast-v6", set_addresses(1, ["ff02::5/64"]), "routers.r1.ports.1.addresses[0]",
     ["cannot be a router interface address"]),
    ("address-loopback", set_addresses(1, ["127.0.0.1/8"]), "routers.r1.ports.1.addresses[0]",
     ["cannot be a router interface address"]),
    ("address-unspecified", set_addresses(1, ["::/64"]), "routers.r1.ports.1.addresses[0]",
     ["cannot be a router interface address"]),
    ("unknown-top", lambda d: d.update(route={}), "route", ["unknown key", "openflow, routers"]),
    ("unknown-openflow", lambda d: d["openflow"].update(port=6653), "openflow.port", ["unknown key"]),
    ("unknown-router", set_router("datapath", 1), "routers.r1.datapath",
     ["unknown key", "bird, dpid, netns, ports"]),
    ("unknown-port", lambda d: port(d, 1).update(mtu=9000), "routers.r1.ports.1.mtu",
     ["unknown key", "addresses, tap"]),
    ("unknown-bird", set_router("bird", {"config": __file__, "socket": "x"}), "routers.r1.bird.socket",
     ["unknown key"]),
    ("dpid-zero", set_router("dpid", 0), "routers.r1.dpid", ["0 is out of range 1..2^64-1"]),
    ("dpid-negative", set_router("dpid", -5), "routers.r1.dpid", ["-5 is out of range"]),
    ("dpid-negative-hex", set_router("dpid", "-0x1"), "routers.r1.dpid", ["-1 is out of range"]),
    ("dpid-too-big", set_router("dpid", 1 << 64), "routers.r1.dpid", [f"{1 << 64} is out of range"]),
    ("dpid-hex-too-big", set_router("dpid", "0x1" + "0" * 16), "routers.r1.dpid", ["out of range"]),
    ("dpid-word", set_router("dpid", "switch1"), "routers.r1.dpid", ["'switch1' is not a dpid"]),
    ("dpid-colons-6", set_router("dpid", "00:00:00:00:00:01"), "routers.r1.dpid",
     ["is not a dpid", "8 pairs of hex digits"]),
    ("dpid-missing", del_router("dpid"), "routers.r1.dpid", ["is required"]),
    ("dpid-bool", set_router("dpid", True), "routers.r1.dpid", ["decimal integer", "not a boolean"]),
    ("dpid-float", set_router("dpid", 1.0), "routers.r1.dpid", ["decimal integer", "not 1.0"]),
    ("port-zero", rename_port(2, 0), "routers.r1.ports.0", ["1..4294967039"]),
    ("port-string", rename_port(2, "eth0"), "routers.r1.ports.eth0", ["1..4294967039"]),
    ("port-huge", rename_port(2, 1 << 32), f"routers.r1.ports.{1 << 32}", ["1..4294967039"]),
    ("port-reserved", rename_port(2, 0xFFFFFFFD), f"routers.r1.ports.{0xFFFFFFFD}", ["1..4294967039"]),
    ("port-negative", rename_port(2, -1), "routers.r1.ports.-1", ["1..4294967039"]),
    ("port-not-mapping", lambda d: r1(d)["ports"].update({2: "r1-p2"}), "routers.r1.ports.2",
     ["must be a mapping"]),
    ("ports-missing", del_router("ports"), "routers.r1.ports", ["is required"]),
    ("ports-empty", set_router("ports", {}), "routers.r1.ports", ["is required"]),
    ("ports-list", set_router("ports", ["r1-p1"]), "routers.r1.ports", ["is required"]),
    ("netns-bad", set_router("netns", "r1/x"), "routers.r1.netns", ["'r1/x' is not a valid network namespace"]),
    ("netns-too-long", set_router("netns", "n" * 65), "routers.r1.netns", ["not a valid network namespace"]),
    ("router-name-bad", lambda d: d["routers"].update({"r 2": d["routers"].pop("r1")}), "routers.'r 2'",
     ["'r 2' is not a valid router name", "letters, digits"]),
    ("router-not-mapping", lambda d: d["routers"].update(r1="dpid 1"), "routers.r1", ["must be a mapping"]),
    ("routers-missing", lambda d: d.pop("routers"), "routers", ["is required"]),
    ("routers-empty", lambda d: d.update(routers={}), "routers", ["is required"]),
    ("openflow-not-mapping", lambda d: d.update(openflow="127.0.0.1:6653"), "openflow", ["must be a mapping"]),
    ("listen-no-port", set_listen("127.0.0.1"), "openflow.listen", ["must be HOST:PORT", "'127.0.0.1'"]),
    ("listen-int", set_listen(6653), "openflow.listen", ["must be HOST:PORT", "6653"]),
    ("listen-hostname", set_listen("localhost:6653"), "openflow.listen", ["'localhost' is not an IP address"]),
    ("listen-port-zero", set_listen("127.0.0.1:0"), "openflow.listen", ["'0' is not in 1..65535"]),
    ("listen-port-big", set_listen("127.0.0.1:65536"), "openflow.listen", ["'65536' is not in 1..65535"]),
    ("listen-port-word", set_listen("127.0.0.1:of"), "openflow.listen", ["'of' is not in 1..65535"]),
    ("listen-port-negative", set_listen("127.0.0.1:-1"), "openflow.listen", ["not in 1..65535"]),
    ("bird-missing-file", set_router("bird", {"config": "no/such/bird.conf"}), "routers.r1.bird.config",
     ["no/such/bird.conf does not exist"]),
    ("bird-no-config", set_router("bird", {}), "routers.r1.bird.config", ["is required"]),
    ("bird-not-mapping", set_router("bird", "bird.conf"), "routers.r1.bird", ["must be a mapping"]),
    ("router-same-dpid", add_router("r2", dpid=1), "routers.r2.dpid", ["0x1 is also the dpid of router r1"]),
    ("router-same-dpid-hex", add_router("r2", dpid="0x1"), "routers.r2.dpid", ["also the dpid of router r1"]),
    ("router-same-netns", add_router("r2", netns="r1"), "routers.r2.netns",
     ["'r1' is also the netns of router r1"]),
    ("router-default-netns-clash", compose(set_router("netns", "r2"), add_router("r2"),
                                           lambda d: d["routers"]["r2"].pop("netns")),
     "routers.r2.netns", ["'r2' is also the netns of router r1"]),
    ("netns-not-string", set_router("netns", 5), "routers.r1.netns", ["must be a name (text), not the number 5"]),
]


@pytest.mark.parametrize("edit,key,words", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_malformed_config_names_key_and_problem(tmp_path, edit, key, words):
    data = copy.deepcopy(good())
    edit(data)
    path = tmp_path / "taprouter.yaml"
    with pytest.raises(ConfigError) as info:
        config.parse(data, path)
    problems = info.value.problems
    # One broken thing, one message: no cascade of follow-on complaints.
    assert len(problems) == 1, problems
    file_part, key_part, text = problems[0].split(": ", 2)
    assert file_part == str(path)
    assert key_part == key
    for word in words:
        assert word in text, (word, problems[0])
    assert str(info.value) == problems[0]


def test_base_of_malformed_cases_is_valid(tmp_path):
    # Otherwise every malformed case above could pass for the wrong reason.
    parsed = config.parse(good(), tmp_path / "taprouter.yaml")
    assert [r.name for r in parsed.routers] == ["r1"]


def test_all_problems_reported_in_one_pass(tmp_path):
    data = good()
    edit = compose(set_tap(1, "x" * 20), set_router("dpid", 0), set_listen("127.0.0.1:99999"),
                   set_addresses(2, ["10.0.2.0/24"]))
    edit(data)
    with pytest.raises(ConfigError) as info:
        config.parse(data, tmp_path / "c.yaml")
    keys = sorted(p.split(": ")[1] for p in info.value.problems)
    assert keys == ["openflow.listen", "routers.r1.dpid", "routers.r1.ports.1.tap",
                    "routers.r1.ports.2.addresses[0]"]


def test_same_tap_name_in_two_routers_is_fine(tmp_path):
    data = good()
    add_router("r2", ports={1: {"tap": "r1-p1"}})(data)
    parsed = config.parse(data, tmp_path / "c.yaml")
    assert [p.tap for r in parsed.routers for p in r.ports] == ["r1-p1", "r1-p2", "r1-p1"]


def test_two_routers_with_invalid_dpids_are_not_reported_as_duplicates(tmp_path):
    data = good()
    del r1(data)["dpid"]
    add_router("r2")(data)
    del data["routers"]["r2"]["dpid"]
    with pytest.raises(ConfigError) as info:
        config.parse(data, tmp_path / "c.yaml")
    assert [p.split(": ")[1] for p in info.value.problems] == ["routers.r1.dpid", "routers.r2.dpid"], \
        info.value.problems


# --- files -----------------------------------------------------------------------------------------


def write(tmp_path: Path, text: str | bytes, name: str = "taprouter.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def test_yaml_syntax_error_has_line_number(tmp_path):
    path = write(tmp_path, "openflow:\n  listen: 127.0.0.1:6653\nrouters:\n  r1: {dpid: 1\n  r2: x\n")
    with pytest.raises(ConfigError) as info:
        config.load(path)
    [problem] = info.value.problems
    # The unclosed flow mapping opened on line 4 is noticed at the ':' of line 5.
    assert problem.startswith(f"{path}: line 5, column 5: "), problem
    assert "expected ',' or '}'" in problem


def test_yaml_tab_indentation_reports_line(tmp_path):
    path = write(tmp_path, "openflow:\n\tlisten: 127.0.0.1:6653\n")
    with pytest.raises(ConfigError) as info:
        config.load(path)
    [problem] = info.value.problems
    assert problem.startswith(f"{path}: line 2, column 1: ")


@pytest.mark.parametrize("text", ["- r1\n- r2\n", "just a string\n", "", "42\n"],
                         ids=["list", "string", "empty", "number"])
def test_non_mapping_file(tmp_path, text):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert info.value.problems == [f"{path.resolve()}: (top): the file must be a mapping with 'openflow' "
                                   "and 'routers'"]


def test_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert info.value.problems == [f"{path}: cannot read: No such file or directory"]


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        config.load(tmp_path)
    assert info.value.problems == [f"{tmp_path}: cannot read: Is a directory"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file(tmp_path):
    path = write(tmp_path, DESIGN_EXAMPLE)
    path.chmod(0)
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert info.value.problems == [f"{path}: cannot read: Permission denied"]


def test_binary_file_is_a_config_error(tmp_path):
    path = write(tmp_path, b"\xff\xfe\x00\x01garbage")
    with pytest.raises(ConfigError) as info:
        config.load(path)
    [problem] = info.value.problems
    assert problem.startswith(f"{path}: ")


def test_listen_port_superscript_digit_is_a_config_error(tmp_path):
    data = good()
    set_listen("127.0.0.1:²")(data)
    with pytest.raises(ConfigError) as info:
        config.parse(data, tmp_path / "c.yaml")
    assert info.value.problems[0].split(": ")[1] == "openflow.listen"


def test_port_number_superscript_digit_is_a_config_error(tmp_path):
    data = good()
    rename_port(2, "²")(data)
    with pytest.raises(ConfigError) as info:
        config.parse(data, tmp_path / "c.yaml")
    assert info.value.problems[0].split(": ")[1] == "routers.r1.ports.'²'"


# --- good files ------------------------------------------------------------------------------------


def test_design_example_loads(tmp_path):
    (tmp_path / "bird").mkdir()
    (tmp_path / "bird" / "r1.conf").write_text("router id 10.0.1.1;\n")
    path = write(tmp_path, DESIGN_EXAMPLE)
    loaded = config.load(path)
    assert loaded == Config(
        path=path.resolve(),
        listen=Listen("127.0.0.1", 6653),
        routers=(RouterConfig(
            name="r1", dpid=1, netns="r1",
            ports=(
                PortConfig(1, "r1-p1", (ipaddress.IPv4Interface("10.0.1.1/24"),
                                        ipaddress.IPv6Interface("2001:db8:1::1/64"))),
                PortConfig(2, "r1-p2", (ipaddress.IPv4Interface("10.0.2.1/24"),)),
            ),
            bird=BirdConfig((tmp_path / "bird" / "r1.conf").resolve()),
        ),),
    )


def test_design_example_without_bird(tmp_path):
    text = DESIGN_EXAMPLE.split("    bird:")[0]
    loaded = config.load(write(tmp_path, text))
    assert loaded.routers[0].bird is None
    assert [p.number for p in loaded.routers[0].ports] == [1, 2]


def test_bird_config_absolute_path(tmp_path):
    bird = tmp_path / "elsewhere.conf"
    bird.write_text("")
    data = good()
    set_router("bird", {"config": str(bird)})(data)
    assert config.parse(data, tmp_path / "sub" / "c.yaml").routers[0].bird == BirdConfig(bird)


def test_bird_config_relative_to_the_config_file_not_cwd(tmp_path, monkeypatch):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "b.conf").write_text("")
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path / "etc", "routers:\n  r1:\n    dpid: 1\n    ports: {1: {tap: t1}}\n"
                                   "    bird: {config: b.conf}\n")
    assert config.load(path).routers[0].bird == BirdConfig((tmp_path / "etc" / "b.conf").resolve())


@pytest.mark.parametrize("text,dpid", [
    ("0x1", 1), ('"0x1"', 1), ('"0xdeadbeef"', 0xDEADBEEF), ("42", 42), ('"42"', 42),
    ('"0xffffffffffffffff"', (1 << 64) - 1), (str((1 << 64) - 1), (1 << 64) - 1), ('"0o17"', 15),
    ('"00:00:00:00:00:00:00:01"', 1),
])
def test_dpid_forms(tmp_path, text, dpid):
    path = write(tmp_path, f"routers:\n  r1:\n    dpid: {text}\n    ports: {{1: {{tap: t1}}}}\n")
    assert config.load(path).routers[0].dpid == dpid


def test_defaults(tmp_path):
    path = write(tmp_path, "routers:\n  edge-1:\n    dpid: 7\n    ports:\n      3: {tap: e-p3}\n")
    loaded = config.load(path)
    assert loaded.listen == Listen("127.0.0.1", 6653)
    [router] = loaded.routers
    assert router.netns == "edge-1"
    assert router.bird is None
    assert router.ports == (PortConfig(3, "e-p3", ()),)


def test_openflow_without_listen_uses_default(tmp_path):
    data = good()
    data["openflow"] = {}
    assert config.parse(data, tmp_path / "c.yaml").listen == Listen("127.0.0.1", 6653)


@pytest.mark.parametrize("text,host,port", [
    ("0.0.0.0:6633", "0.0.0.0", 6633), ("[::1]:6653", "::1", 6653), ("10.1.2.3:1", "10.1.2.3", 1),
    ("127.0.0.1:65535", "127.0.0.1", 65535),
])
def test_listen_forms(tmp_path, text, host, port):
    data = good()
    set_listen(text)(data)
    assert config.parse(data, tmp_path / "c.yaml").listen == Listen(host, port)


def test_ports_sorted_and_string_numbers_accepted(tmp_path):
    data = good()
    r1(data)["ports"] = {"10": {"tap": "t10"}, 2: {"tap": "t2"}, "3": {"tap": "t3"}}
    parsed = config.parse(data, tmp_path / "c.yaml")
    assert [(p.number, p.tap) for p in parsed.routers[0].ports] == [(2, "t2"), (3, "t3"), (10, "t10")]


def test_point_to_point_and_host_addresses_allowed(tmp_path):
    data = good()
    set_addresses(1, ["10.0.9.0/31", "10.0.9.7/32", "fe80::1/64", "2001:db8::/127"])(data)
    addresses = config.parse(data, tmp_path / "c.yaml").routers[0].ports[0].addresses
    assert [str(a) for a in addresses] == ["10.0.9.0/31", "10.0.9.7/32", "fe80::1/64", "2001:db8::/127"]


def test_config_objects_are_frozen(tmp_path):
    parsed = config.parse(good(), tmp_path / "c.yaml")
    with pytest.raises(AttributeError):
        parsed.routers[0].dpid = 2  # type: ignore[misc]
