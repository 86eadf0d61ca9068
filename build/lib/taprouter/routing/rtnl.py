"""rtnetlink's constants as the kernel's headers define them, and the one rule for which destinations
the FIB never carries; parse, rtdecode, rtshape and rtcolumns each apply that rule in their form."""

from __future__ import annotations

AF_INET, AF_INET6 = 2, 10

# Message types (linux/rtnetlink.h, linux/netlink.h) and request flags.
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWLINK, RTM_DELLINK = 16, 17
RTM_NEWADDR, RTM_DELADDR = 20, 21
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_NEWNEIGH, RTM_DELNEIGH = 28, 29
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300

# Route attributes, the main table, unicast routes, a next hop whose link is down; a link that is up.
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_MULTIPATH, RTA_TABLE, RTA_VIA, RTA_NH_ID = 1, 4, 5, 6, 9, 15, 18, 30
RT_TABLE_MAIN = 254
RTN_UNICAST = 1
RTNH_F_LINKDOWN = 16
IFF_UP = 1

# Destinations the FIB never carries, as (family, network, length): multicast and link-local. The
# punt table hands the router's own and link-scope traffic to the kernel; a route there is the
# kernel's business.
NEVER_IN_FIB = ((AF_INET, 0xE0000000, 4), (AF_INET, 0xA9FE0000, 16),
                (AF_INET6, 0xFF << 120, 8), (AF_INET6, 0xFE80 << 112, 10))
_WIDTH = {AF_INET: 32, AF_INET6: 128}


def never_in_fib_source(family: int, value: str = "value", length: str = "dst_len") -> str:
    """never_in_fib for one family as a Python expression over the names `value` and `length`, for
    decoders generated as source (rtshape)."""
    width = _WIDTH[family]
    terms = [f"({length} >= {bits} and {value} >> {width - bits} == {net >> (width - bits):#x})"
             for f, net, bits in NEVER_IN_FIB if f == family]
    return " or ".join(terms) or "False"


# Per family, the rule compiled once: the generic route decoder asks it for every route it reads.
_RULES = {family: eval(f"lambda value, dst_len: {never_in_fib_source(family)}")  # noqa: S307 (our own text)
          for family in _WIDTH}


def never_in_fib(family: int, value: int, length: int) -> bool:
    """Whether the destination `value`/`length` (an address as an int) lies within NEVER_IN_FIB."""
    return _RULES[family](value, length)


def never_in_fib_first_bytes(family: int) -> bytes:
    """The first bytes a destination within NEVER_IN_FIB can start with: a run of routes with none of
    them has none such (rtcolumns)."""
    width = _WIDTH[family]
    found: set[int] = set()
    for f, net, bits in NEVER_IN_FIB:
        if f != family:
            continue
        first = net >> (width - 8)
        span = 1 << max(0, 8 - bits)  # a network shorter than a byte covers several first bytes
        found.update(range(first & ~(span - 1), (first & ~(span - 1)) + span))
    return bytes(sorted(found))
