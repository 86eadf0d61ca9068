"""`taprouter bird-config`: OSPFv2 and OSPFv3, a router id for an IPv6-only router, options checked;
every config it prints passes BIRD's own parser (`bird -p`)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from taprouter import cli

needs_bird = pytest.mark.skipif(shutil.which("bird") is None, reason="bird2 is not installed")

DUAL = """routers:
  r1:
    dpid: 0x2a
    ports:
      1: {tap: r1-p1, addresses: [10.0.2.1/24, "2001:db8:1::1/64"]}
      2: {tap: r1-p2, addresses: [10.0.1.1/24]}
      3: {tap: r1-p3, addresses: ["2001:db8:3::1/64"]}
"""
V6ONLY = """routers:
  r6:
    dpid: DPID
    ports:
      1: {tap: r6-p1, addresses: ["2001:db8:1::1/64"]}
      2: {tap: r6-p2, addresses: ["2001:db8:2::1/64"]}
"""


def bird_config(tmp_path, capsys, text: str, *args: str) -> tuple[int, str, str]:
    path = tmp_path / "t.yaml"
    path.write_text(text)
    try:
        code = cli.main(["bird-config", "-c", str(path), *args])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def bird_accepts(tmp_path, text: str) -> None:
    conf = tmp_path / "bird.conf"
    conf.write_text(text)
    done = subprocess.run(["bird", "-p", "-c", str(conf)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, f"bird -p refuses it: {done.stderr}\n{text}"


def block(text: str, header: str) -> str:
    start = text.index(header)
    return text[start:text.index("\n}\n", start)]


@needs_bird
def test_dual_stack_gets_ospfv2_and_ospfv3_on_the_right_taps(tmp_path, capsys):
    code, out, _ = bird_config(tmp_path, capsys, DUAL)
    assert code == 0
    bird_accepts(tmp_path, out)
    assert "router id 10.0.1.1;" in out  # the lowest IPv4 address, whatever the port order
    v2 = block(out, "protocol ospf v2 ospf4 {")
    v3 = block(out, "protocol ospf v3 ospf6 {")
    assert '"r1-p1", "r1-p2"' in v2 and "r1-p3" not in v2
    assert '"r1-p1", "r1-p3"' in v3 and "r1-p2" not in v3
    assert "ipv6 { import all; export none; };" in v3
    assert "protocol kernel kernel6 {" in out


@needs_bird
def test_ipv6_only_router_id_from_the_dpid(tmp_path, capsys):
    code, out, _ = bird_config(tmp_path, capsys, V6ONLY.replace("DPID", "0x00000a0b0c0d0e0f"))
    assert code == 0
    bird_accepts(tmp_path, out)
    assert "router id 12.13.14.15;" in out  # the dpid's low 32 bits
    assert "ipv4" not in out and "ospf4" not in out and "kernel4" not in out
    assert "protocol ospf v3 ospf6 {" in out
    assert "unique in the OSPF domain" in out


@pytest.mark.parametrize("dpid, rid", [("0x2a", "0.0.0.42"), ("0x500000000", "0.0.0.5"),
                                       ("0xffffffffffffffff", "255.255.255.255")])
def test_ipv6_only_router_id_is_never_zero(tmp_path, capsys, dpid, rid):
    code, out, _ = bird_config(tmp_path, capsys, V6ONLY.replace("DPID", dpid))
    assert code == 0
    assert f"router id {rid};" in out


@needs_bird
def test_largest_hello_is_accepted_by_bird(tmp_path, capsys):
    code, out, _ = bird_config(tmp_path, capsys, DUAL, "--ospf-hello", "16383")
    assert code == 0
    assert "dead 65532;" in out
    bird_accepts(tmp_path, out)


@pytest.mark.parametrize("hello", ["0", "-1", "16384"])
def test_hello_out_of_range_is_a_usage_error(tmp_path, capsys, hello):
    code, out, err = bird_config(tmp_path, capsys, DUAL, "--ospf-hello", hello)
    assert code == 2 and out == ""
    assert err.startswith("error: --ospf-hello must be 1 to 16383 seconds")


def test_unknown_router_is_a_usage_error(tmp_path, capsys):
    code, _, err = bird_config(tmp_path, capsys, DUAL, "--router", "r9")
    assert code == 2 and "no router named 'r9'" in err
