"""RouterCore.flows_read and the session it hands the result to: what a switch reports back after a
restart, including entries nobody can parse.

The switch's side is a recorder of what the daemon sends (no switch is what this is about); the
entries are real flow-stats bytes, decoded by readback and os-ken.
"""

from __future__ import annotations

import logging
import random
import struct
import threading
from pathlib import Path

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from taprouter import config
from taprouter.controller.openflow import pipeline, readback
from taprouter.controller.core import RouterCore
from taprouter.controller.session.switch import Connected, Described, FlowsRead, Phase
from taprouter.controller.openflow.pipeline import Owner
from taprouter import prefix

from test_readback import SEED, _refused, entry, route_flow

DPID = 0x7F01


class Recorder:
    """Stands in for os-ken's Datapath: its id, its parser, and the messages sent to it."""

    id = DPID
    ofproto = ofp
    ofproto_parser = parser

    def __init__(self) -> None:
        self.sent: list = []

    def send_msg(self, msg) -> None:
        self.sent.append(msg)


def reading(core_: RouterCore, dp: Recorder):
    """The router's session, connected on `dp` and asking it for what it holds."""
    session = core_.routers[DPID].session
    session.handle(Connected(dp), 0.0)
    session.handle(Described(dp, ()), 0.0)
    assert session.phase is Phase.READING
    dp.sent.clear()
    return session


def handed_over(core_: RouterCore) -> FlowsRead:
    (event,) = core_.routers[DPID].events
    assert isinstance(event, FlowsRead)
    return event


def core(tmp_path: Path) -> RouterCore:
    data = {"routers": {"r1": {"dpid": DPID, "netns": "trfr-r1", "ports": {1: {"tap": "trfr-t1"}}}}}
    return RouterCore(config.parse(data, tmp_path / "taprouter.yaml"))


def read(core_: RouterCore, dp: Recorder, blocks: list[bytes]) -> None:
    """flows_read on a thread of its own: an entry that hangs os-ken's parser must fail the test, not hang it."""
    done = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            core_.flows_read(dp, [readback.RawFlowStats(b) for b in blocks], 1)
        except BaseException as exc:  # handed to the test below
            failure.append(exc)
        done.set()

    threading.Thread(target=run, daemon=True).start()
    assert done.wait(20), "flows_read did not return"
    assert not failure, failure


def drifting_entry(rng: random.Random) -> bytes:
    """A punted route whose output action says 16 bytes but has the type of a fixed 8-byte one
    (dec-mpls-ttl): os-ken's walk lands on a zero-length experimenter action behind it, for ever."""
    good = bytearray(entry(route_flow(prefix.pack(4, 0x0A000000, 8), 0), rng))
    at = len(good) - 16  # the output action: type, length 16, port, max_len, 6 pad bytes
    assert struct.unpack_from("!HH", good, at) == (ofp.OFPAT_OUTPUT, 16)
    good[at:at + 2] = struct.pack("!H", ofp.OFPAT_DEC_MPLS_TTL)
    good[at + 8:at + 12] = struct.pack("!HH", ofp.OFPAT_EXPERIMENTER, 0)
    return bytes(good)


def test_an_entry_os_ken_would_parse_for_ever_is_logged_and_left_the_rest_read(tmp_path, caplog):
    rng = random.Random(SEED + 80)
    routes = {prefix.pack(4, 0xC6336400 + (i << 8), 24): 7 for i in range(20)}
    good = b"".join(entry(route_flow(pk, t), rng) for pk, t in routes.items())
    c, dp = core(tmp_path), Recorder()
    session = reading(c, dp)
    read(c, dp, [good, drifting_entry(rng)])
    event = handed_over(c)
    assert event.routes == routes and event.flows == () and len(event.unreadable) == 1
    with caplog.at_level(logging.ERROR, logger="taprouter.session"):
        session.handle(event, 0.0)
    assert "malformed flow entry" in caplog.text and not dp.sent
    assert session.phase is Phase.READING  # groups and meters are still to come


def test_an_unreadable_flow_with_our_cookie_is_deleted_by_its_own_match(tmp_path):
    # A /8 route flow in table 2 whose instruction is write-metadata: os-ken parses it, and no flow
    # we write looks so (test_readback checks flow_from_stats refuses it).
    unreadable = _refused()["write-metadata"]
    c, dp = core(tmp_path), Recorder()
    session = reading(c, dp)
    read(c, dp, [unreadable])
    event = handed_over(c)
    session.handle(event, 0.0)
    assert len(dp.sent) == 1
    mod = dp.sent[0]
    assert mod.command == ofp.OFPFC_DELETE_STRICT and mod.table_id == 2 and mod.priority == 18
    assert mod.cookie == pipeline.cookie(Owner.ROUTE) and mod.match["ipv4_dst"] == ("10.0.0.0", "255.0.0.0")
    assert event.routes == {} and event.flows == ()
