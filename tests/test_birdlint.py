"""birdlint: which kernel protocols of a BIRD file lack `graceful restart on;`."""

from pathlib import Path

import yaml

from taprouter.config import parse
from taprouter.routing.birdconf import starter
from taprouter.routing.birdlint import kernel_without_graceful_restart, warnings


def test_finds_kernel_protocols_without_graceful_restart():
    text = """
    protocol device { scan time 10; }
    protocol kernel k4 { ipv4 { export all; }; graceful restart on; }
    protocol kernel k6 {
      ipv6 { export filter { if net ~ [ ::/0 ] then accept; reject; }; };
      # graceful restart on;   (commented out: does not count)
    }
    protocol kernel { ipv4; graceful restart; }
    protocol kernel { ipv4; /* graceful restart on; */ }
    protocol static graceful { ipv4; }
    """
    assert kernel_without_graceful_restart(text) == ["k6", "#4"]


def test_graceful_restart_off_counts_as_missing():
    assert kernel_without_graceful_restart("protocol kernel k { ipv4; graceful restart off; }") == ["k"]


def test_no_kernel_protocol_no_warning():
    assert warnings("router id 1.1.1.1; protocol device {}") == []


def test_the_starter_config_has_it_everywhere():
    config = parse(yaml.safe_load("""
openflow: {listen: 127.0.0.1:6653}
routers:
  r1:
    dpid: 1
    netns: r1
    ports:
      1: {tap: r1-p1, addresses: [10.0.1.1/24, "2001:db8:1::1/64"]}
"""), Path("taprouter.yaml"))
    text = starter(config.routers[0])
    assert text.count("protocol kernel") == 2
    assert kernel_without_graceful_restart(text) == []


def test_check_warns_of_a_kernel_protocol_without_graceful_restart(tmp_path, capsys):
    import shutil

    import pytest

    from taprouter import cli
    if shutil.which("bird") is None:
        pytest.skip("bird is not installed")
    bird = tmp_path / "r1.conf"
    bird.write_text("router id 10.0.1.1;\nprotocol device {}\nprotocol kernel k4 { ipv4 { export all; }; }\n")
    path = tmp_path / "taprouter.yaml"
    path.write_text(yaml.safe_dump({"openflow": {"listen": "127.0.0.1:6653"}, "routers": {"r1": {
        "dpid": 1, "netns": "r1", "ports": {1: {"tap": "r1-p1", "addresses": ["10.0.1.1/24"]}},
        "bird": {"config": str(bird)}}}}))
    assert cli.main(["check", "-c", str(path)]) == 0
    err = capsys.readouterr().err
    assert f"warning: {bird}: protocol kernel k4 has no `graceful restart on;`" in err, err
    # The file is read, never rewritten.
    assert "graceful" not in bird.read_text()

    bird.write_text(bird.read_text().replace("export all; };", "export all; }; graceful restart on;"))
    assert cli.main(["check", "-c", str(path)]) == 0
    assert "graceful" not in capsys.readouterr().err
