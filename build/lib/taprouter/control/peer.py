"""Who may use the control socket: the file's owner and mode, and the peer's credentials.

Two gates, as sockets in /run usually have: the socket file is 0660 and belongs to root and the
`taprouter` group (0600 when that group does not exist), so the kernel refuses anyone else's
connect(); and each connection's peer (SO_PEERCRED: pid, uid, gid at connect time) must be root,
the daemon's own user, or a member of that group, so a file whose mode someone widened by hand
still lets no one else in.
"""

from __future__ import annotations

import grp
import logging
import os
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

LOG = logging.getLogger("taprouter.control")

_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


@dataclass(frozen=True)
class Peer:
    pid: int
    uid: int
    gid: int


def credentials(sock: socket.socket) -> Peer:
    pid, uid, gid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
    return Peer(pid, uid, gid)


def group_id(name: str | None) -> int | None:
    if not name:
        return None
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


def supplementary_groups(pid: int, proc: Path = Path("/proc")) -> frozenset[int]:
    """The process's supplementary groups (`Groups:` in /proc/PID/status); empty when it cannot
    be read (the process has gone, or lives in a pid namespace we cannot see: pid 0)."""
    if pid <= 0:
        return frozenset()
    try:
        text = (proc / str(pid) / "status").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("Groups:"):
            return frozenset(int(g) for g in line.split()[1:])
    return frozenset()


def allowed(peer: Peer, gid: int | None, own_uid: int, groups: frozenset[int]) -> bool:
    """Root, the daemon's own user, or a member of the control group (its primary group or a
    supplementary one)."""
    if peer.uid in (0, own_uid):
        return True
    return gid is not None and (peer.gid == gid or gid in groups)


def check(sock: socket.socket, gid: int | None) -> Peer | None:
    """The peer if it may use the socket, else None (and a log line naming its uid and pid)."""
    peer, own = credentials(sock), os.geteuid()
    groups = frozenset() if gid is None or peer.uid in (0, own) else supplementary_groups(peer.pid)
    if allowed(peer, gid, own, groups):
        return peer
    LOG.warning("control socket: refused uid %d (pid %d): neither root nor in the control group", peer.uid,
                peer.pid)
    return None


def secure(path: Path, group: str | None) -> int | None:
    """Give a freshly bound socket file its owner and mode: root (or us) and the group, 0660,
    when the group exists and we may hand the file to it; else 0600. Returns the gid let in."""
    gid = group_id(group)
    if gid is not None:
        try:
            os.chown(path, -1, gid)
        except PermissionError:
            LOG.warning("control socket %s: cannot give it to group %s; only %s may use it", path, group,
                        "root" if os.geteuid() == 0 else f"uid {os.geteuid()}")
            gid = None
    os.chmod(path, 0o660 if gid is not None else 0o600)
    return gid
