"""A fast route producer for benchmarks: raw rtnetlink, batched sends, no ACK per route.

`ip -batch` tops out near 40-90K routes/s; to measure taprouter rather than
iproute2 the harness needs a producer faster than the daemon. Routes are
/24s (or /48s for IPv6) counted up from a base, all via one gateway.
"""

from __future__ import annotations

import ipaddress
import os
import random
import socket
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from taprouter import netns  # noqa: E402

RTM_NEWROUTE, RTM_DELROUTE = 24, 25
NLM_F_REQUEST, NLM_F_CREATE, NLM_F_EXCL = 0x1, 0x400, 0x200
RTA_DST, RTA_OIF, RTA_GATEWAY = 1, 4, 5
RTPROT_STATIC, RT_SCOPE_UNIVERSE, RTN_UNICAST, RT_TABLE_MAIN = 4, 0, 1, 254
BATCH_BYTES = 256 * 1024


def prefixes(count: int, base: str = "20.0.0.0", version: int = 4):
    start = int(ipaddress.ip_address(base))
    step = 1 << 8 if version == 4 else 1 << 80
    plen = 24 if version == 4 else 48
    for i in range(count):
        yield ipaddress.ip_network((start + i * step, plen))


# Routes come and go in a shuffled order, as from a BGP session (BENCH_ORDER=sorted for counting order).
# The order matters to the kernel, not to taprouter: its trie deleted a million sorted /24s in 33 s
# here, and the same routes shuffled in 3.5 s.
ORDER = os.environ.get("BENCH_ORDER", "shuffled")


def arrival(count: int, base: str, seed: int, version: int = 4) -> list:
    """`count` prefixes from `base`, in the order a benchmark adds or deletes them (see ORDER)."""
    nets = list(prefixes(count, base, version))
    if ORDER != "sorted":
        random.Random(seed).shuffle(nets)
    return nets


def _message(kind: int, flags: int, dst, gateway, ifindex: int, seq: int) -> bytes:
    family = 2 if dst.version == 4 else 10
    dst_raw = dst.network_address.packed
    gw_raw = gateway.packed
    attrs = (struct.pack("=HH", 4 + len(dst_raw), RTA_DST) + dst_raw
             + struct.pack("=HH", 4 + len(gw_raw), RTA_GATEWAY) + gw_raw
             + struct.pack("=HHI", 8, RTA_OIF, ifindex))
    body = struct.pack("=BBBBBBBBI", family, dst.prefixlen, 0, 0, RT_TABLE_MAIN, RTPROT_STATIC,
                       RT_SCOPE_UNIVERSE, RTN_UNICAST, 0) + attrs
    return struct.pack("=IHHII", 16 + len(body), kind, flags, seq, 0) + body


def build(ifindex: int, gateway: str, routes, delete: bool = False) -> list[bytes]:
    """The messages for every route, joined into send-sized batches (done before timing starts)."""
    gw = ipaddress.ip_address(gateway)
    kind = RTM_DELROUTE if delete else RTM_NEWROUTE
    flags = NLM_F_REQUEST if delete else NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL
    batches, batch, size = [], [], 0
    for seq, dst in enumerate(routes, 1):
        msg = _message(kind, flags, dst, gw, ifindex, seq)
        batch.append(msg)
        size += len(msg)
        if size >= BATCH_BYTES:
            batches.append(b"".join(batch))
            batch, size = [], 0
    if batch:
        batches.append(b"".join(batch))
    return batches


def send(netns_name: str, batches: list[bytes]) -> None:
    """Hand the batches to the kernel; errors come back unasked-for only (no ACK per route)."""
    with netns.entered(netns_name):
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
    with sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        sock.bind((0, 0))
        for batch in batches:
            sock.send(batch)


def inject(netns_name: str, ifindex: int, gateway: str, routes, delete: bool = False) -> int:
    """Build and send every route in `routes`; returns how many were sent."""
    routes = list(routes)
    send(netns_name, build(ifindex, gateway, routes, delete))
    return len(routes)


if __name__ == "__main__":
    import argparse
    import time

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("netns")
    parser.add_argument("dev")
    parser.add_argument("gateway")
    parser.add_argument("count", type=int)
    parser.add_argument("--delete", action="store_true")
    args = parser.parse_args()
    with netns.iproute(args.netns) as ipr:
        index = ipr.link_lookup(ifname=args.dev)[0]
    version = ipaddress.ip_address(args.gateway).version
    started = time.monotonic()
    n = inject(args.netns, index, args.gateway, prefixes(args.count, "20.0.0.0" if version == 4 else "2001:db8:1000::",
                                                            version), delete=args.delete)
    print(f"{n} routes in {time.monotonic() - started:.2f} s")
