"""The routing daemons a lab runs, asked about their config files: does each take it
(`bird -p`, `vtysh -C`, `exabgp validate`), which FRR daemons it needs, does it speak OSPF."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

FRR_DIR = Path("/usr/lib/frr")
OSPF = re.compile(r"^\s*protocol\s+ospf\b", re.MULTILINE)
FRR_OSPF = re.compile(r"^\s*router\s+ospf\b", re.MULTILINE)
FRR_BGP = re.compile(r"^\s*router\s+bgp\b", re.MULTILINE)


def bird_refusal(config: Path) -> str | None:
    try:
        proc = subprocess.run(["bird", "-p", "-c", str(config)], capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        return "bird is not installed (Debian package bird2)"
    if proc.returncode == 0:
        return None
    return (proc.stderr or proc.stdout).strip().removeprefix("bird: ") or f"bird -p exited {proc.returncode}"


def frr_refusal(config: Path) -> str | None:
    """`vtysh -C -f FILE`: FRR's own check of a config, every daemon's commands at once."""
    if shutil.which("vtysh") is None or not (FRR_DIR / "zebra").exists():
        return "FRR is not installed (Debian package frr)"
    proc = subprocess.run(["vtysh", "-C", "-f", str(config)], capture_output=True, text=True, timeout=30)
    if proc.returncode == 0:
        return None
    return " ".join((proc.stderr or proc.stdout).split()) or f"vtysh -C exited {proc.returncode}"


def exabgp_command() -> str | None:
    """ExaBGP's command: beside this Python's (a venv's), else on PATH."""
    beside = Path(sys.executable).parent / "exabgp"
    return str(beside) if beside.exists() else shutil.which("exabgp")


def exabgp_refusal(config: Path) -> str | None:
    """`exabgp validate FILE`."""
    command = exabgp_command()
    if command is None:
        return "ExaBGP is not installed (pip install exabgp)"
    proc = subprocess.run([command, "validate", str(config)], capture_output=True, text=True, timeout=60)
    if proc.returncode == 0:
        return None
    text = " ".join((proc.stderr + proc.stdout).split())
    return text[text.find("error:"):] if "error:" in text else text or f"exabgp validate exited {proc.returncode}"


def frr_daemons(config: Path) -> tuple[str, ...]:
    """The FRR daemons a config needs: zebra and staticd always, bgpd and ospfd when it has them."""
    text = config.read_text(errors="replace")
    return ("zebra", "staticd") + (("bgpd",) if FRR_BGP.search(text) else ()) + (
        ("ospfd",) if FRR_OSPF.search(text) else ())


def speaks_ospf(config: Path | None) -> bool:
    try:
        text = config.read_text(errors="replace") if config is not None else ""
    except OSError:
        return False
    return OSPF.search(text) is not None or FRR_OSPF.search(text) is not None
