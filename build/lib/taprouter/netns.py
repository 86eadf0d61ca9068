"""Network namespaces: create them, enter them from one thread, remove them."""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

from pyroute2 import netns as _netns


def exists(name: str) -> bool:
    return name in _netns.listnetns()


def ensure(name: str) -> bool:
    """Create the netns if it is missing; True if it was created."""
    if exists(name):
        return False
    _netns.create(name)
    return True


def remove(name: str) -> None:
    if exists(name):
        _netns.remove(name)


@contextlib.contextmanager
def entered(name: str) -> Iterator[None]:
    """Run a block with the calling thread (only) inside a netns.

    setns(CLONE_NEWNET) changes only the calling thread, so this is safe in a
    threaded daemon as long as the block does not hand work to other threads.
    Sockets and files opened inside stay bound to that netns after leaving.
    """
    saved = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        _netns.setns(name, flags=0)
        try:
            yield
        finally:
            _netns.setns(saved, flags=0)
    finally:
        os.close(saved)


def iproute(name: str, **kwargs):
    """An rtnetlink socket inside a netns, made from this thread.

    pyroute2's own netns= option forks a child per socket; forking a threaded
    daemon risks deadlocks, and the children inherit our signal handlers.
    """
    from pyroute2 import IPRoute

    with entered(name):
        return IPRoute(**kwargs)
