"""A minimal OpenFlow 1.3 client for the benchmarks: a table's flow count from the switch."""

from __future__ import annotations

import socket
import struct

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as ofparser
from os_ken.ofproto.ofproto_protocol import ProtocolDesc


class FlowProbe:
    """A minimal OpenFlow 1.3 client on the bridge's management socket: asks for a table's flow
    count, one table-stats round trip per question."""

    def __init__(self, bridge: str):
        self.path = f"/var/run/openvswitch/{bridge}.mgmt"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.dp = ProtocolDesc(ofp.OFP_VERSION)
        self.xid = 0

    def __enter__(self) -> "FlowProbe":
        self.sock.connect(self.path)
        self.sock.sendall(struct.pack("!BBHI", ofp.OFP_VERSION, ofp.OFPT_HELLO, 8, 0))
        self._read()  # the switch's hello
        return self

    def __exit__(self, *exc) -> None:
        self.sock.close()

    def _read(self) -> tuple[int, int, bytes]:
        header = self._exactly(8)
        _version, kind, length, xid = struct.unpack("!BBHI", header)
        body = self._exactly(length - 8)
        if kind == ofp.OFPT_ECHO_REQUEST:
            self.sock.sendall(struct.pack("!BBHI", ofp.OFP_VERSION, ofp.OFPT_ECHO_REPLY, length, xid) + body)
        return kind, xid, body

    def _exactly(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise ConnectionError(f"{self.path} closed")
            data += chunk
        return data

    def _multipart(self, request) -> list[bytes]:
        self.xid += 1
        request.xid = self.xid
        request.serialize()
        self.sock.sendall(bytes(request.buf))
        bodies = []
        while True:
            kind, xid, body = self._read()
            if kind == ofp.OFPT_MULTIPART_REPLY and xid == self.xid:
                bodies.append(body[8:])  # after the multipart header
                if not struct.unpack_from("!HH", body)[1] & ofp.OFPMPF_REPLY_MORE:
                    return bodies

    def table_count(self, table: int) -> int:
        """The table's active flow count, from table statistics (24 bytes per table)."""
        for body in self._multipart(ofparser.OFPTableStatsRequest(self.dp, 0)):
            for offset in range(0, len(body), 24):
                table_id, active = struct.unpack_from("!B3xI", body, offset)
                if table_id == table:
                    return active
        raise RuntimeError(f"table {table} missing from the table statistics")
