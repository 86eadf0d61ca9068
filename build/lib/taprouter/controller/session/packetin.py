"""PacketIns straight to the TAP relay, decoded with struct on os-ken's receive thread.

Every frame for the kernel (ARP, ND, ping, BGP, OSPF) arrives as a PacketIn. Through
os-ken, each one is parsed into objects (its match alone costs tens of microseconds),
wrapped in an event, queued, and handled on another thread: that bounds the punt path
to some thousands of frames per second and adds a thread hop to every round trip.
Here os-ken's parser for OFPT_PACKET_IN is replaced by one that reads the ingress port
and the frame with two struct calls and hands them to the relay at once. A PacketIn it
cannot read (no in_port in its match, a truncated message) goes to os-ken's parser
unchanged, and so to the app's handler as before.

Once a switch is up, `taker` goes further: the connection offers it each whole PacketIn
as it reads ahead (connection.LockedSocket), before os-ken's receive loop sees it. The
parser above still serves the first moments of a connection.
"""

from __future__ import annotations

import logging
from typing import Callable

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as ofp_parser

from ...bridge.ports import SwitchPort
from ..openflow.decode import packet_in

LOG = logging.getLogger(__name__)

# Where a PacketIn goes: (datapath id, ingress port, frame) -> whether it was taken.
Deliver = Callable[[int, int, bytes, int], bool]  # datapath, ingress port, frame, reason

_OS_KEN_PARSER = ofp_parser._MSG_PARSERS[ofp.OFPT_PACKET_IN]


def taker(dpid: int, to_tap: Callable[[SwitchPort, bytes], object]) -> Callable[[bytes], bool]:
    """For connection.install: a PacketIn of this datapath goes to `to_tap` before os-ken's
    receive loop sees it. One that decode.packet_in does not understand is left to os-ken."""

    def take(message: bytes) -> bool:
        got = packet_in(message)
        if got is None:
            return False
        try:
            to_tap(SwitchPort(dpid, got[0]), got[1], got[2])
        except Exception:  # a bug here must not end the switch's connection: the frame is lost
            LOG.exception("a PacketIn from switch %#x could not be relayed", dpid)
        return True

    return take


def install(deliver: Deliver) -> None:
    """Route PacketIns to `deliver` before os-ken builds anything for them."""

    def parser(datapath, version, msg_type, msg_len, xid, buf):
        got = packet_in(buf)
        if got is not None and datapath.id is not None and deliver(datapath.id, *got):
            return None  # taken: os-ken makes no event of it
        return _OS_KEN_PARSER(datapath, version, msg_type, msg_len, xid, buf)

    ofp_parser._MSG_PARSERS[ofp.OFPT_PACKET_IN] = parser

