"""Reading many queued datagrams with one recvmmsg() call, without letting go of the GIL.

The kernel sends each route change as a datagram of its own, so a full table is a
million of them. `socket.recv_into` costs a system call per datagram and lets go of
the GIL around each one; while the reconcile thread runs, getting the GIL back waits
for its switch interval, so the watcher fell behind one datagram at a time.

`recvmmsg` with MSG_DONTWAIT reads up to SLOTS datagrams per call and never blocks,
so it is called through `ctypes.PyDLL`, which keeps the GIL for the call: the few
tens of microseconds it takes are cheaper than two GIL hand-overs per datagram.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import socket

SLOTS = 128
SLOT_SIZE = 64 << 10  # route, address and neighbour notifications are far smaller
MSG_TRUNC = 0x20


class _IOVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [("msg_name", ctypes.c_void_p), ("msg_namelen", ctypes.c_uint32),
                ("msg_iov", ctypes.POINTER(_IOVec)), ("msg_iovlen", ctypes.c_size_t),
                ("msg_control", ctypes.c_void_p), ("msg_controllen", ctypes.c_size_t),
                ("msg_flags", ctypes.c_int)]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _MsgHdr), ("msg_len", ctypes.c_uint)]


_libc = ctypes.PyDLL(None, use_errno=True)  # PyDLL: the call keeps the GIL (it never blocks)
_recvmmsg = _libc.recvmmsg
_recvmmsg.argtypes = [ctypes.c_int, ctypes.POINTER(_MMsgHdr), ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
_recvmmsg.restype = ctypes.c_int


class Truncated(OSError):
    """A datagram was larger than its slot; its tail is lost, so what it said is unknown."""


class Receiver:
    """Buffers for one socket's reads; `read()` returns the datagrams queued now, joined."""

    def __init__(self, slots: int = SLOTS, slot_size: int = SLOT_SIZE) -> None:
        self.slots, self.slot_size = slots, slot_size
        # Anonymous pages, not create_string_buffer: that one zero-fills all 8 MB, resident in
        # every router's watcher for good, while the kernel writes only the first page or so of
        # each slot (notifications are small), so only those become resident.
        self._buffer = mmap.mmap(-1, slots * slot_size)
        self._view = memoryview(self._buffer)
        self._iovecs = (_IOVec * slots)()
        self._headers = (_MMsgHdr * slots)()
        base = ctypes.addressof(ctypes.c_char.from_buffer(self._buffer))
        for i in range(slots):
            self._iovecs[i].iov_base = base + i * slot_size
            self._iovecs[i].iov_len = slot_size
            header = self._headers[i].msg_hdr
            header.msg_iov = ctypes.pointer(self._iovecs[i])
            header.msg_iovlen = 1
        # Each reply's msg_flags and msg_len, read as columns of a uint32 view over the headers
        # rather than through ctypes attributes (two wrapper objects per datagram).
        words = memoryview(self._headers).cast("B").cast("I")
        stride = ctypes.sizeof(_MMsgHdr) // 4
        self._flags = words[(_MMsgHdr.msg_hdr.offset + _MsgHdr.msg_flags.offset) // 4::stride]
        self._lengths = words[_MMsgHdr.msg_len.offset // 4::stride]

    def read(self, sock: socket.socket) -> bytes:
        """Up to `slots` queued datagrams, in order and joined; empty when none is queued.

        Raises OSError as recv() would (ENOBUFS after an overflow), and Truncated when a
        datagram did not fit its slot.
        """
        count = _recvmmsg(sock.fileno(), self._headers, self.slots, socket.MSG_DONTWAIT, None)
        if count < 0:
            code = ctypes.get_errno()
            if code in (errno.EAGAIN, errno.EWOULDBLOCK):
                return b""
            raise OSError(code, os.strerror(code))
        view, size = self._view, self.slot_size
        flags = self._flags[:count].tolist()
        if any(flags) and any(flag & MSG_TRUNC for flag in flags):  # netlink sets none as a rule
            raise Truncated(errno.EMSGSIZE, f"a datagram was larger than {size} bytes")
        return b"".join([view[start:start + length]
                         for start, length in zip(range(0, count * size, size), self._lengths[:count].tolist())])
