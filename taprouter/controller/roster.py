"""Routers a reload adds or removes while the daemon runs (core.RouterCore calls in here).

A router added starts as at daemon start: its netns, TAP holder (adopting what a previous daemon
left), netlink watcher, resolver and BIRD. The daemon keeps the connection of a switch whose dpid
no router has (app.py ignores it), so one that connected before the reload is taken at once;
otherwise the router waits for it, as at start.

A router removed is torn down as `taprouter down --router R` would (BIRD, the holder, the TAPs,
the netns and the run files), after its switch is emptied of what the router put there: its
flows (by cookie), groups and meters. A daemon that stops leaves them, because it is coming back
(the hitless restart) and the kernel, the TAPs and BIRD stay with them. A removed router is not
coming back, and its kernel, neighbours and BIRD go: left on the switch, its flows would go on
forwarding on routes and neighbours nobody updates, and punting to a controller that no longer
answers for them. Emptied, a switch in fail-mode secure drops everything, as a switch with no
router should. The switch's connection stays open and ignored like any other unclaimed switch,
so a reload that adds the router again takes it at once.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from os_ken.ofproto import ofproto_v1_3 as ofp

from ..bridge.ports import SwitchPort
from ..bridge.relay import Relay
from ..down import Teardown, down
from .openflow.pipeline import COOKIE_MAGIC, COOKIE_MASK
from .router import Router

LOG = logging.getLogger("taprouter.core")

FAREWELL_WAIT = 5.0  # seconds a removal waits for the switch to answer the deletes' barrier


class StartFailed(Exception):
    pass


@dataclass(frozen=True)
class Departure:
    """What removing a router did."""
    emptied: bool | None  # the switch answered the barrier after the deletes; None: no switch was connected
    teardown: Teardown

    def summary(self, name: str, dpid: int) -> list[str]:
        switch = {None: f"switch {dpid:#x} not connected: whatever it holds of the router stays on it",
                  True: f"switch {dpid:#x} emptied of the router's flows, groups and meters",
                  False: f"switch {dpid:#x} sent the deletes of the router's flows, groups and meters, "
                         f"and did not confirm them within {FAREWELL_WAIT:g} s"}[self.emptied]
        lines = [f"router {name}: {switch}",
                 f"router {name}: removed {', '.join(self.teardown.removed) or 'nothing (already down)'}"]
        return lines + [f"router {name}: kept {what}" for what in self.teardown.kept]


def start(router: Router) -> None:
    """Start a router a reload added. One that fails part way is stopped and torn down again, so
    a reload that is tried again starts from nothing."""
    try:
        router.start()
    except Exception as exc:
        LOG.exception("router %s: did not start; tearing down what it started", router.name)
        router.stop()
        down(router.config)
        raise StartFailed(str(exc) or type(exc).__name__) from exc


def farewell(dp, groups: list[int], meters: list[int]) -> tuple[list, object]:
    """The messages that empty a switch of a router: every flow with our cookie in every table,
    then the groups and meters the router's planner holds; and the barrier behind them (its xid
    set, so its answer can be waited for before it is sent). Flows go first: Open vSwitch
    refuses to delete a meter a flow still names."""
    parser = dp.ofproto_parser
    messages = [parser.OFPFlowMod(dp, cookie=COOKIE_MAGIC, cookie_mask=COOKIE_MASK, table_id=ofp.OFPTT_ALL,
                                  command=ofp.OFPFC_DELETE, out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY)]
    messages += [parser.OFPGroupMod(dp, command=ofp.OFPGC_DELETE, type_=ofp.OFPGT_ALL, group_id=gid)
                 for gid in groups]
    messages += [parser.OFPMeterMod(dp, command=ofp.OFPMC_DELETE, flags=0, meter_id=mid) for mid in meters]
    barrier = parser.OFPBarrierRequest(dp)
    dp.set_xid(barrier)
    return messages, barrier


def empty(dp, router: Router, waiting: dict[int, threading.Event]) -> bool:
    """Send the farewell to a removed router's switch and wait for its barrier (the core sets
    the event in `waiting` when the answer comes); True if it came within FAREWELL_WAIT."""
    groups, meters = router.planner.owned()
    messages, barrier = farewell(dp, groups, meters)
    answered = waiting[barrier.xid] = threading.Event()
    for msg in messages:
        dp.send_msg(msg)
    dp.send_msg(barrier)
    emptied = answered.wait(FAREWELL_WAIT)
    waiting.pop(barrier.xid, None)
    LOG.info("router %s: switch %#x %s: %d group(s), %d meter(s) and every flow with our cookie", router.name,
             dp.id, "emptied" if emptied else "sent deletes, unconfirmed", len(groups), len(meters))
    return emptied


def leave(router: Router, relay: Relay) -> Teardown:
    """Stop a removed router's threads, take its TAPs out of the relay (closing our descriptors),
    and tear the rest down as `taprouter down` does."""
    router.stop()
    for port in router.config.ports:
        relay.remove(SwitchPort(router.config.dpid, port.number))
    try:
        return down(router.config)
    except Exception as exc:  # the router is out of the daemon regardless: say what is left
        LOG.exception("router %s: tearing it down failed part way", router.name)
        return Teardown((), (f"whatever `taprouter down` had yet to remove: it failed part way ({exc})",))
