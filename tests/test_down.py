"""`down` removes only what taprouter made inside the run root, whatever the router's name."""

from __future__ import annotations

import secrets
import shutil
import tempfile
from pathlib import Path

import pytest

from taprouter import down as down_mod
from taprouter import paths
from taprouter.bridge.holder import HolderClient, pid_alive
from taprouter.config import RouterConfig
from taprouter.controller import status_file


def router(name: str) -> RouterConfig:
    # No ports, and a netns no one has: down() touches nothing in the kernel.
    return RouterConfig(name, 1, f"tdn{secrets.token_hex(4)}", (), None)


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under root, with the bytes of files (None for directories)."""
    return {str(p.relative_to(root)): None if p.is_dir() else p.read_bytes()
            for p in sorted(root.rglob("*"))}


@pytest.fixture
def run_root(tmp_path, monkeypatch) -> Path:
    """A run root with a sentinel beside it and another router's files inside it."""
    (tmp_path / "sentinel").write_text("outside the run root\n")
    root = tmp_path / "run"
    (root / "other").mkdir(parents=True)
    (root / "other" / "holder.log").write_text("another router's\n")
    monkeypatch.setenv("TAPROUTER_RUN_DIR", str(root))
    return root


@pytest.mark.parametrize("name", ["..", ".", "../run", "a/../..", "", "-r", ".hidden", "r\n"])
def test_down_never_touches_a_path_made_from_a_name_that_is_not_plain(tmp_path, run_root, name):
    before = tree(tmp_path)
    done = down_mod.down(router(name))
    assert tree(tmp_path) == before
    assert done.removed == ()
    assert len(done.kept) == 1 and "is not a plain name" in done.kept[0], done.kept


def test_router_dir_refuses_a_name_that_is_not_plain(run_root):
    assert paths.router_dir("r1") == run_root / "r1"
    for name in ("..", ".", "a/b", "", "x" * 65):
        with pytest.raises(ValueError, match="not a plain name"):
            paths.router_dir(name)


def test_down_removes_its_files_and_keeps_a_directory_holding_foreign_ones(tmp_path, run_root):
    run_dir = run_root / "r1"
    run_dir.mkdir()
    for path in down_mod.run_files(run_dir):
        path.write_text("ours\n")
    (run_dir / "notes.txt").write_text("the operator's\n")
    (run_dir / "keep").mkdir()
    outside = tree(tmp_path / "run" / "other") | {"sentinel": (tmp_path / "sentinel").read_bytes()}
    done = down_mod.down(router("r1"))
    assert sorted(p.name for p in run_dir.iterdir()) == ["keep", "notes.txt"]
    assert done.removed == (f"run files in {run_dir}",)
    assert done.kept == (f"run directory {run_dir} left in place: it holds files taprouter did not make "
                         "(keep, notes.txt)",)
    assert tree(tmp_path / "run" / "other") | {"sentinel": (tmp_path / "sentinel").read_bytes()} == outside


def test_down_leaves_a_run_directory_that_is_a_symlink_alone(tmp_path, run_root):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "status.json").write_text("not taprouter's\n")
    (run_root / "r1").symlink_to(elsewhere)
    done = down_mod.down(router("r1"))
    assert (elsewhere / "status.json").read_text() == "not taprouter's\n"
    assert (run_root / "r1").is_symlink()
    assert done.removed == () and "left alone" in done.kept[0], done


def test_down_unlinks_a_symlinked_run_file_not_its_target(tmp_path, run_root):
    (run_root / "r1").mkdir()
    (run_root / "r1" / "status.json").symlink_to(tmp_path / "sentinel")
    done = down_mod.down(router("r1"))
    assert (tmp_path / "sentinel").read_text() == "outside the run root\n"
    assert not (run_root / "r1").exists() and done.kept == (), done


def test_down_knows_every_file_the_holder_and_the_status_writer_make(monkeypatch):
    # A short root: the holder's Unix socket path must fit in 108 bytes.
    root = Path(tempfile.mkdtemp(prefix="tdn"))
    try:
        monkeypatch.setenv("TAPROUTER_RUN_DIR", str(root))
        holder = HolderClient(paths.router_dir("r1"))
        pid = holder.start()
        status_file.write("r1", {"switch_connected": False})
        assert (root / "r1" / "status.json").exists() and pid_alive(pid)
        done = down_mod.down(router("r1"))
        assert not pid_alive(pid)
        assert not (root / "r1").exists(), sorted(p.name for p in (root / "r1").iterdir())
        assert done == down_mod.Teardown(("TAP holder of r1", f"run directory {root / 'r1'}"), ())
    finally:
        shutil.rmtree(root, ignore_errors=True)
