"""Service logging: the journal detected by JOURNAL_STREAM and stderr's device and inode; JSON lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from taprouter import logsetup

CHILD = ("import logging, sys; from taprouter import logsetup; "
         "logsetup.configure(sys.argv[1], sys.argv[2]); logging.getLogger('taprouter.x').warning('hello %s', 1)")


def child(tmp_path, level: str, fmt: str, journal: str | None) -> str:
    """Runs configure() in a process whose stderr is a file; returns what it logged."""
    err = tmp_path / "stderr"
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    with open(err, "wb") as f:
        if journal == "match":
            st = os.fstat(f.fileno())
            env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        elif journal == "other":
            env["JOURNAL_STREAM"] = "1:2"
        subprocess.run([sys.executable, "-c", CHILD, level, fmt], stderr=f, env=env, check=True)
    return err.read_text()


def test_on_journal_pure():
    st = os.stat("/")
    assert logsetup.on_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, st)
    assert not logsetup.on_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"}, st)
    assert not logsetup.on_journal({}, st)
    assert not logsetup.on_journal({"JOURNAL_STREAM": "x:y"}, st)
    assert not logsetup.on_journal({"JOURNAL_STREAM": "1:2"}, None)


def test_text_is_stamped_on_a_terminal_or_file(tmp_path):
    line = child(tmp_path, "info", "text", None)
    assert line.endswith("WARNING taprouter.x: hello 1\n")
    assert line[:4].isdigit()  # the year of the timestamp


def test_no_timestamp_when_stderr_is_the_journal(tmp_path):
    assert child(tmp_path, "info", "text", "match") == "WARNING taprouter.x: hello 1\n"


def test_an_inherited_journal_variable_does_not_count(tmp_path):
    assert child(tmp_path, "info", "text", "other")[:4].isdigit()


def test_json_lines(tmp_path):
    entry = json.loads(child(tmp_path, "info", "json", None))
    assert entry["level"] == "warning" and entry["logger"] == "taprouter.x" and entry["message"] == "hello 1"
    assert isinstance(entry["time"], float)
    assert "time" not in json.loads(child(tmp_path, "info", "json", "match"))


def test_level_filters(tmp_path):
    assert child(tmp_path, "error", "text", None) == ""
