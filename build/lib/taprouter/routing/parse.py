"""Turns pyroute2 rtnetlink messages into typed kernel objects; pure, tested in tables."""

from __future__ import annotations

import ipaddress

from ..mac import mac_to_int
from .model import Address, Link, Neighbour, NextHop, Route, RouteKind
from .rtnl import AF_INET, AF_INET6, IFF_UP, RT_TABLE_MAIN, RTN_UNICAST, RTNH_F_LINKDOWN, never_in_fib


def link(msg) -> Link:
    return Link(index=msg["index"], name=msg.get_attr("IFLA_IFNAME"), up=bool(msg["flags"] & IFF_UP),
                carrier=bool(msg.get_attr("IFLA_CARRIER")))


def address(msg) -> Address | None:
    text = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
    if text is None or msg["family"] not in (AF_INET, AF_INET6):
        return None
    return Address(msg["index"], ipaddress.ip_interface(f"{text}/{msg['prefixlen']}"))


def neighbour(msg) -> Neighbour | None:
    dst = msg.get_attr("NDA_DST")
    if dst is None or msg["family"] not in (AF_INET, AF_INET6):
        return None
    mac = msg.get_attr("NDA_LLADDR")
    return Neighbour(ifindex=msg["ifindex"], ip=ipaddress.ip_address(dst),
                     mac=mac_to_int(mac) if mac and mac != "00:00:00:00:00:00" else None,
                     state=msg["state"])


def _gateway(msg) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    value = msg.get_attr("RTA_GATEWAY")
    if value:
        return ipaddress.ip_address(value)
    via = msg.get_attr("RTA_VIA")  # another family's gateway: IPv4 via IPv6 (RFC 5549)
    return ipaddress.ip_address(via["addr"]) if via else None


def _has_nh_id(msg) -> bool:
    # pyroute2 0.9 does not name RTA_NH_ID (30): it decodes it as UNKNOWN, with its type.
    return msg.get_attr("RTA_NH_ID") is not None or any(
        name == "UNKNOWN" and isinstance(value, dict) and value.get("header", {}).get("type") == 30
        for name, value in msg["attrs"])


def route(msg) -> Route | None:
    """A main-table route the switch may carry, or None for the ones it must not.

    The local table, link-local and multicast destinations never reach the FIB
    tables: the punt table handles the router's own and link-scope traffic.
    """
    family = msg["family"]
    if family not in (AF_INET, AF_INET6):
        return None
    table = msg.get_attr("RTA_TABLE") or msg["table"]
    if table != RT_TABLE_MAIN:
        return None
    dst_text = msg.get_attr("RTA_DST") or ("0.0.0.0" if family == AF_INET else "::")
    dst = ipaddress.ip_network(f"{dst_text}/{msg['dst_len']}", strict=False)
    if never_in_fib(family, int(dst.network_address), dst.prefixlen):
        return None
    if _has_nh_id(msg) or msg["src_len"]:
        # Routes on kernel nexthop objects: not read yet; the kernel forwards them.
        return Route(dst, msg.get_attr("RTA_PRIORITY") or 0, RouteKind.OTHER, ())
    metric = msg.get_attr("RTA_PRIORITY") or 0
    if msg["type"] != RTN_UNICAST:
        return Route(dst, metric, RouteKind.OTHER, ())
    nexthops = []
    multipath = msg.get_attr("RTA_MULTIPATH")
    if multipath:
        for nh in multipath:
            nexthops.append(NextHop(ifindex=nh["oif"], gateway=_gateway(nh),
                                    weight=nh["hops"] + 1, linkdown=bool(nh["flags"] & RTNH_F_LINKDOWN)))
    else:
        nexthops.append(NextHop(ifindex=msg.get_attr("RTA_OIF") or 0,
                                gateway=_gateway(msg),
                                linkdown=bool(msg["flags"] & RTNH_F_LINKDOWN)))
    return Route(dst, metric, RouteKind.UNICAST, tuple(sorted(nexthops)))
