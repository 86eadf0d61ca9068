"""What every view needs: the config, a policy store as the logged-in user, and the daemon's socket."""

from __future__ import annotations

from django.conf import settings

from ..config import Config


def config() -> Config:
    return settings.TAPROUTER_CONFIG


def routers() -> list[str]:
    return [r.name for r in config().routers]


def store(request):
    """The policy store, writing its audit entries in the web user's name."""
    from ..policy.store import Store

    return Store.open(config(), user=f"{request.user.get_username()} (web)")


def socket():
    return config().control.socket
