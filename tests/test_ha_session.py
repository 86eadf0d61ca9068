"""The session's side of OpenFlow roles: what it sends, what a reply or a role error does, and that
a slave's session writes nothing of its own."""

from __future__ import annotations

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from taprouter.controller.session.switch import Connected, Errored, RoleReplied, SwitchSession


class Dp:
    ofproto_parser = parser
    ofproto = ofp

    def __init__(self) -> None:
        self.sent: list = []
        self.xid = 0

    def send_msg(self, msg) -> bool:
        self.sent.append(msg)
        return True

    def set_xid(self, msg) -> int:
        self.xid += 1
        msg.xid = self.xid
        return self.xid


def connected() -> tuple[SwitchSession, Dp]:
    session, dp = SwitchSession("r1"), Dp()
    session.handle(Connected(dp), 0.0)
    return session, dp


def test_role_request_and_reply():
    session, dp = connected()
    session.request_role(ofp.OFPCR_ROLE_MASTER, 5, 1.0)
    request = dp.sent[-1]
    assert isinstance(request, parser.OFPRoleRequest)
    assert (request.role, request.generation_id) == (ofp.OFPCR_ROLE_MASTER, 5)
    assert session.role_sent == (ofp.OFPCR_ROLE_MASTER, 5) and session.role_confirmed is None
    session.handle(RoleReplied(dp, ofp.OFPCR_ROLE_MASTER, 5), 1.1)
    assert session.role_confirmed == (ofp.OFPCR_ROLE_MASTER, 5)
    # Asking for another role forgets the confirmation until the switch answers again.
    session.request_role(ofp.OFPCR_ROLE_SLAVE, 6, 2.0)
    assert session.role_confirmed is None


def test_role_errors_are_not_resyncs_other_errors_are():
    session, dp = connected()
    session.request_role(ofp.OFPCR_ROLE_MASTER, 5, 1.0)
    session.handle(RoleReplied(dp, ofp.OFPCR_ROLE_MASTER, 5), 1.0)
    session.handle(Errored(dp, ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_IS_SLAVE, 9, b""), 2.0)
    assert session.role_confirmed is None and session.role_sent is None  # asked again from the lease
    session.handle(Errored(dp, ofp.OFPET_ROLE_REQUEST_FAILED, ofp.OFPRRFC_STALE, 10, b""), 2.0)
    assert session.resync_at is None and session.errors == 0
    session.handle(Errored(dp, ofp.OFPET_FLOW_MOD_FAILED, ofp.OFPFMFC_TABLE_FULL, 11, b""), 3.0)
    assert session.resync_at is not None and session.errors == 1


def test_a_new_connection_starts_without_a_role():
    session, dp = connected()
    session.request_role(ofp.OFPCR_ROLE_SLAVE, 3, 1.0)
    session.handle(RoleReplied(dp, ofp.OFPCR_ROLE_SLAVE, 3), 1.0)
    other = Dp()
    session.handle(Connected(other), 2.0)
    assert session.role_sent is None and session.role_confirmed is None


def test_a_slave_does_not_delete_an_unreadable_flow():
    session, dp = connected()
    session.may_write = False
    before = len(dp.sent)
    session._delete_unreadable(b"\x00" * 8)  # never parsed: a slave leaves it to the master at once
    assert len(dp.sent) == before
