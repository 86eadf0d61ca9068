"""Who may use the control socket: the rule, the peer's groups, and a real user kept out and let in."""

from __future__ import annotations

import grp
import logging
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from fakedaemon import FakeDaemon
from taprouter.control.peer import Peer, allowed, supplementary_groups
from taprouter.control.server import ControlServer


@pytest.mark.parametrize("peer,groups,expected", [
    (Peer(10, 0, 0), frozenset(), True),  # root
    (Peer(10, 1000, 1000), frozenset(), True),  # the daemon's own user
    (Peer(10, 2000, 500), frozenset(), True),  # the control group as its primary group
    (Peer(10, 2000, 2000), frozenset({7, 500}), True),  # ... or a supplementary one
    (Peer(10, 2000, 2000), frozenset({7}), False),
    (Peer(10, 2000, 2000), frozenset(), False),
])
def test_root_the_daemons_user_and_the_group_may_use_it(peer, groups, expected):
    assert allowed(peer, 500, 1000, groups) is expected


def test_without_a_group_only_root_and_the_daemons_user_may():
    assert allowed(Peer(10, 0, 0), None, 1000, frozenset())
    assert allowed(Peer(10, 1000, 1000), None, 1000, frozenset())
    assert not allowed(Peer(10, 2000, 500), None, 1000, frozenset({500}))


def test_supplementary_groups_come_from_proc(tmp_path):
    assert supplementary_groups(os.getpid()) == frozenset(os.getgroups())
    (tmp_path / "77").mkdir()
    (tmp_path / "77" / "status").write_text("Name:\tx\nUid:\t5\t5\t5\t5\nGroups:\t4 24 1001 \nNSpid:\t77\n")
    assert supplementary_groups(77, tmp_path) == frozenset({4, 24, 1001})
    assert supplementary_groups(78, tmp_path) == frozenset()  # gone
    assert supplementary_groups(0, tmp_path) == frozenset()  # a pid we cannot see


# A client that reports what happened, in the words the test checks: the HTTP status, or the errno.
CLIENT = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except OSError as exc:
    print("connect", exc.errno)
    raise SystemExit
s.sendall(b"GET /v1/status?router=r1 HTTP/1.1\\r\\nHost: t\\r\\nConnection: close\\r\\n\\r\\n")
print("status", s.makefile("rb").readline().split()[1].decode())
"""


def _as_user(user: str, sock: Path) -> str:
    # runuser sets the user's groups from the group database, as a login would.
    return subprocess.run(["runuser", "-u", user, "--", "/usr/bin/python3", "-c", CLIENT, str(sock)],
                          capture_output=True, text=True, timeout=30, check=True).stdout.strip()


@pytest.fixture
def throwaway():
    """A system user and a system group, neither holding the other, removed whatever happens."""
    if os.geteuid() != 0 or not shutil.which("useradd") or not shutil.which("runuser"):
        pytest.skip("needs root, useradd and runuser")
    tag = uuid.uuid4().hex[:8]
    user, group = f"trctl{tag}", f"trctlg{tag}"
    made: list[list[str]] = []
    try:
        subprocess.run(["groupadd", "--system", group], check=True, capture_output=True)
        made.append(["groupdel", group])
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", user],
                       check=True, capture_output=True)
        made.insert(0, ["userdel", user])
        yield user, group
    finally:
        for command in made:
            subprocess.run(command, capture_output=True)
        for name, lookup in ((user, pwd.getpwnam), (group, grp.getgrnam)):
            with pytest.raises(KeyError):
                lookup(name)  # removed


def test_a_user_outside_the_group_is_refused_and_let_in_once_a_member(throwaway, caplog):
    user, group = throwaway
    uid, gid = pwd.getpwnam(user).pw_uid, grp.getgrnam(group).gr_gid
    where = Path(tempfile.mkdtemp(prefix="trctl-"))
    where.chmod(0o755)  # the user may reach the socket file; its mode decides the rest
    server = ControlServer(where / "control.sock", FakeDaemon(), group=group)
    server.start()
    try:
        info = server.path.stat()
        assert stat.S_IMODE(info.st_mode) == 0o660 and info.st_gid == gid and info.st_uid == 0
        assert _as_user(user, server.path) == "connect 13"  # EACCES: the file's mode refuses it

        # A mode widened by hand still lets no one else in: the peer check refuses it, and says who.
        server.path.chmod(0o666)
        with caplog.at_level(logging.WARNING, logger="taprouter.control"):
            assert _as_user(user, server.path) == "status 403"
        assert f"refused uid {uid} (pid " in caplog.text

        server.path.chmod(0o660)
        subprocess.run(["usermod", "-a", "-G", group, user], check=True, capture_output=True)
        assert _as_user(user, server.path) == "status 200"
    finally:
        server.stop()
        shutil.rmtree(where)
