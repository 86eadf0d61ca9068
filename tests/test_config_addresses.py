"""Port addresses: subnets that overlap across ports are refused, addresses that cannot work are
refused, odd ones are warnings that `check` prints (and `check --strict` refuses) and `run` logs."""

from __future__ import annotations

import ipaddress
import logging

import pytest

from taprouter import cli, config, configaddr
from taprouter.config import ConfigError

from test_config import good, write


def parsed(tmp_path, *addresses_per_port) -> config.Config:
    data = good()
    data["routers"]["r1"]["ports"] = {n: {"tap": f"r1-p{n}", "addresses": list(a)}
                                      for n, a in enumerate(addresses_per_port, start=1)}
    return config.parse(data, tmp_path / "c.yaml")


def problems(tmp_path, *addresses_per_port) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parsed(tmp_path, *addresses_per_port)
    return [p.split(": ", 1)[1] for p in info.value.problems]


def warnings(tmp_path, *addresses_per_port) -> list[str]:
    return [w.split(": ", 1)[1] for w in parsed(tmp_path, *addresses_per_port).warnings]


SUBNETS = "one routing table cannot reach a subnet through two ports"


@pytest.mark.parametrize("ports,expected", [
    ((["10.0.1.1/24"], ["10.0.1.2/24"]), "ports.2.addresses: 10.0.1.2/24 overlaps 10.0.1.1/24 of port 1"),
    ((["10.0.1.1/24"], ["10.0.1.129/25"]), "ports.2.addresses: 10.0.1.129/25 overlaps 10.0.1.1/24 of port 1"),
    ((["10.0.1.129/25"], ["10.0.0.1/16"]), "ports.2.addresses: 10.0.0.1/16 overlaps 10.0.1.129/25 of port 1"),
    ((["2001:db8:1::1/64"], ["2001:db8:1::2/64"]),
     "ports.2.addresses: 2001:db8:1::2/64 overlaps 2001:db8:1::1/64 of port 1"),
    ((["10.9.0.1/24", "2001:db8:1::1/64"], ["10.0.2.1/24"], ["2001:db8:1:0:8000::1/65"]),
     "ports.3.addresses: 2001:db8:1:0:8000::1/65 overlaps 2001:db8:1::1/64 of port 1"),
], ids=["same-v4", "nested-v4", "wider-later-v4", "same-v6-64", "v6-third-port"])
def test_subnets_that_overlap_across_ports_are_refused_naming_both(tmp_path, ports, expected):
    assert problems(tmp_path, *ports) == [f"routers.r1.{expected}: {SUBNETS}"]


def test_subnets_apart_and_link_local_on_every_port_are_fine(tmp_path):
    loaded = parsed(tmp_path, ["10.0.1.1/24", "fe80::1/64", "10.0.9.1/30"], ["10.0.2.1/24", "fe80::1:1/64"],
                    ["10.0.9.5/30", "2001:db8::1/64"])
    assert loaded.warnings == ()


def test_two_subnets_on_one_port_may_overlap(tmp_path):
    assert parsed(tmp_path, ["10.0.1.1/24", "10.0.1.2/25"], ["10.0.2.1/24"]).warnings == ()


def test_a_duplicate_address_is_reported_once_not_also_as_an_overlap(tmp_path):
    assert problems(tmp_path, ["10.0.1.1/24"], ["10.0.1.1/24"]) == [
        "routers.r1.ports.2.addresses: 10.0.1.1 is also an address of port 1"]


def test_a_host_address_inside_another_ports_subnet_is_a_warning(tmp_path):
    assert warnings(tmp_path, ["10.0.1.1/24"], ["10.0.1.9/32"]) == [
        "routers.r1.ports.2.addresses: 10.0.1.9/32 is inside the subnet 10.0.1.0/24 of port 1, whose TAP "
        "answers ARP and ND for it as well"]


@pytest.mark.parametrize("address,why", [
    ("255.255.255.255/32", "is the limited broadcast address"),
    ("0.1.2.3/8", "is in 0.0.0.0/8, 'this network' (RFC 1122)"),
    ("::ffff:10.0.0.1/96", "is an IPv4-mapped address"),
])
def test_addresses_that_cannot_work_are_refused(tmp_path, address, why):
    [problem] = problems(tmp_path, [address])
    assert problem.startswith(f"routers.r1.ports.1.addresses[0]: {address} {why}"), problem


def test_an_address_with_a_zone_is_refused(tmp_path):
    assert problems(tmp_path, ["fe80::1%" + "x" * 100 + "/64"]) == [
        "routers.r1.ports.1.addresses[0]: 'fe80::1%xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx…' has a zone (%...): the port is "
        "its zone; write the address alone"]



@pytest.mark.parametrize("address,why", [
    ("2001:db8:1::/64", "is the subnet-router anycast address of 2001:db8:1::/64 (RFC 4291)"),
    ("240.0.0.1/8", "is in 240.0.0.0/4, reserved"),
])
def test_odd_addresses_are_warnings(tmp_path, address, why):
    [warning] = warnings(tmp_path, [address])
    assert warning.startswith(f"routers.r1.ports.1.addresses[0]: {address} {why}"), warning


@pytest.mark.parametrize("address", ["2001:db8::/127", "2001:db8::5/128", "169.254.0.1/30", "10.0.9.0/31"])
def test_addresses_that_look_odd_but_are_usual_are_no_warning(tmp_path, address):
    assert warnings(tmp_path, [address]) == []


def test_overlaps_scale_to_many_ports():
    addresses = [(n, ipaddress.ip_interface(f"10.{n // 256}.{n % 256}.1/24")) for n in range(1, 20001)]
    addresses.append((20001, ipaddress.ip_interface("10.3.0.2/16")))
    found = configaddr.overlaps(addresses)
    assert {o.port for o in found} == {20001}
    assert sorted(o.other for o in found) == list(range(768, 1024))


# --- check and run --------------------------------------------------------------------------------

ODD = "routers:\n  r1:\n    dpid: 1\n    ports: {1: {tap: t1, addresses: ['2001:db8:1::/64']}}\n"


def test_check_prints_warnings_and_passes(tmp_path, capsys):
    path = write(tmp_path, ODD)
    assert cli.main(["check", "-c", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out == f"{path}: OK (1 router(s), 1 port(s))\n"
    assert err.startswith(f"warning: {path.resolve()}: routers.r1.ports.1.addresses[0]: 2001:db8:1::/64 is the "
                          "subnet-router anycast address"), err
    assert len(err.splitlines()) == 1


def test_check_strict_refuses_warnings(tmp_path, capsys):
    path = write(tmp_path, ODD)
    assert cli.main(["check", "--strict", "-c", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines()[1] == f"error: {path}: 1 warning(s), and --strict refuses them"


def test_check_strict_passes_a_file_without_warnings(tmp_path, capsys):
    path = write(tmp_path, ODD.replace("::/64", "::1/64"))
    assert cli.main(["check", "--strict", "-c", str(path)]) == 0
    assert capsys.readouterr().err == ""


def test_run_logs_the_warnings_before_it_starts(tmp_path, monkeypatch, caplog):
    import taprouter.daemon
    started = []
    monkeypatch.setattr(taprouter.daemon, "run", lambda loaded: started.append(loaded) or 0)
    caplog.set_level(logging.WARNING)
    path = write(tmp_path, ODD)
    assert cli.main(["run", "-c", str(path)]) == 0
    assert [r.name for r in started[0].routers] == ["r1"]
    [record] = [r for r in caplog.records if r.name == "taprouter.config"]
    assert record.levelno == logging.WARNING and "subnet-router anycast address" in record.getMessage()
