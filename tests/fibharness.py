"""The FIB tests' harness: a small kernel described in code, the switch it programs (the daemon's own
Planner.plan, its passes applied to the in-memory OpenFlow table in their order), and packets sent
through it."""

from __future__ import annotations

import dataclasses
import ipaddress
from collections import Counter
from dataclasses import dataclass, field

from oftable import OFTable
from taprouter import prefix as pfx
from taprouter.controller.openflow import pipeline
from taprouter.controller.openflow.flows import ETH_TYPE_IPV4, ETH_TYPE_IPV6, Flow, ToGroup
from taprouter.controller.openflow.groups import GroupSpec
from taprouter.controller.openflow.ops import FlowOp, GroupOp, Op
from taprouter.controller.planner import punt
from taprouter.controller.planner.backlog import PASS_ROUTES
from taprouter.controller.planner.fib import PortBinding
from taprouter.controller.planner.reconcile import KernelView, Pass, Planner, PortInput, ReadBack, SwitchView
from taprouter.mac import mac_to_int
from taprouter.routing.model import (NUD_REACHABLE, Address, KernelState, Link, MirrorChanges, Neighbour,
                                     NeighbourKey, NextHop, Route, RouteKey, RouteKind)

IPPROTO_UDP = 17
HOST_MAC = mac_to_int("02:00:00:00:00:10")
KERNEL = "kernel"
EXPIRED = "ttl-expired"
OTHER = RouteKind.OTHER


@dataclass(frozen=True)
class Port:
    """A switch port and the TAP the kernel routes over for it."""

    ifindex: int
    number: int
    mac: int
    addresses: tuple[str, ...]
    up: bool = True
    vid: int | None = None  # PortBinding.vid: None on a router without VLANs, 0 a port's untagged TAP

    @property
    def name(self) -> str:
        return f"tap{self.number}" if not self.vid else f"tap{self.number}.{self.vid}"


P1 = Port(11, 1, mac_to_int("0e:00:00:00:00:01"), ("10.0.1.1/24", "2001:db8:1::1/64"))
P2 = Port(12, 2, mac_to_int("0e:00:00:00:00:02"), ("10.0.2.1/24", "2001:db8:2::1/64"))
P3 = Port(13, 3, mac_to_int("0e:00:00:00:00:03"), ("10.0.3.1/24", "2001:db8:3::1/64"))
HOST = Port(14, 4, mac_to_int("0e:00:00:00:00:04"), ("10.0.4.1/24", "2001:db8:4::1/64"))  # test traffic enters here
PORTS = (P1, P2, P3, HOST)
ETH0 = 20  # a kernel interface that is not on the switch

GW1, GW2, GW3 = "10.0.1.2", "10.0.2.2", "10.0.3.2"
GW1_6, GW2_6, GW3_6 = "fe80::1:2", "fe80::2:2", "fe80::3:2"
MAC1, MAC2, MAC3 = (mac_to_int(f"02:00:00:00:0{i}:02") for i in (1, 2, 3))
MAC_NEW = mac_to_int("02:00:00:00:aa:aa")


def via(gateway: str, port: Port | int, weight: int = 1, linkdown: bool = False) -> NextHop:
    ifindex = port if isinstance(port, int) else port.ifindex
    return NextHop(ifindex, ipaddress.ip_address(gateway), weight, linkdown)


def dev(port: Port | int, linkdown: bool = False) -> NextHop:
    return NextHop(port if isinstance(port, int) else port.ifindex, None, 1, linkdown)


class Kernel:
    """A small declarative kernel: what `ip link`, `ip route` and `ip neigh` would show.

    Each port's addresses bring their connected routes (metric 0 for IPv4, 256 for IPv6), as the
    kernel adds them.
    """

    def __init__(self, ports: tuple[Port, ...] = PORTS, connected: bool = True):
        self.ports: dict[int, Port] = {p.ifindex: p for p in ports}
        self.routes: dict[RouteKey, Route] = {}
        self.neighbours: dict[NeighbourKey, Neighbour] = {}
        if connected:
            for port in ports:
                for text in port.addresses:
                    net = ipaddress.ip_interface(text).network
                    self.route(net, dev(port), metric=0 if net.version == 4 else 256)

    def route(self, dst, *nexthops: NextHop, metric: int | None = None,
              kind: RouteKind = RouteKind.UNICAST) -> "Kernel":
        net = ipaddress.ip_network(dst)
        if metric is None:
            metric = 0 if net.version == 4 else 1024
        hops = () if kind is OTHER else tuple(sorted(nexthops))
        self.routes[RouteKey(net, metric)] = Route(net, metric, kind, hops)
        return self

    def unroute(self, dst, metric: int | None = None) -> "Kernel":
        net = ipaddress.ip_network(dst)
        del self.routes[RouteKey(net, (0 if net.version == 4 else 1024) if metric is None else metric)]
        return self

    def neigh(self, port: Port | int, ip: str, mac: int | None, state: int = NUD_REACHABLE) -> "Kernel":
        ifindex = port if isinstance(port, int) else port.ifindex
        n = Neighbour(ifindex, ipaddress.ip_address(ip), mac, state)
        self.neighbours[n.key] = n
        return self

    def unneigh(self, port: Port | int, ip: str) -> "Kernel":
        ifindex = port if isinstance(port, int) else port.ifindex
        del self.neighbours[NeighbourKey(ifindex, ipaddress.ip_address(ip))]
        return self

    def set_up(self, port: Port, up: bool) -> "Kernel":
        self.ports[port.ifindex] = dataclasses.replace(self.ports[port.ifindex], up=up)
        return self

    def state(self) -> KernelState:
        links = {p.ifindex: Link(p.ifindex, p.name, True, p.up) for p in self.ports.values()}
        links[ETH0] = Link(ETH0, "eth0", True, True)
        addresses = frozenset(Address(p.ifindex, ipaddress.ip_interface(a))
                              for p in self.ports.values() for a in p.addresses)
        return KernelState(links, dict(self.neighbours), addresses)

    def mirror(self) -> dict[int, tuple]:
        """The routes as the mirror keeps them: packed prefix -> (metric, hops, ...), best first."""
        result: dict[int, tuple] = {}
        for route in sorted(self.routes.values(), key=lambda r: (repr(r.dst), r.metric)):
            pk = pfx.from_network(route.dst)
            hops = None if route.kind is OTHER else route.nexthops
            result[pk] = result.get(pk, ()) + (route.metric, hops)
        return result

    def views(self) -> list[punt.PortView]:
        return [punt.PortView(p.number, p.mac, tuple(ipaddress.ip_interface(a) for a in p.addresses), p.vid)
                for p in self.ports.values()]

    def bindings(self) -> dict[int, PortBinding]:
        return {p.ifindex: PortBinding(p.ifindex, p.number, p.mac, p.up, p.vid) for p in self.ports.values()}

    def port_inputs(self) -> list[PortInput]:
        """The ports as the switch describes them, with the TAPs the kernel has for them."""
        return [PortInput(p.number, p.name, p.mac, p.up, p.vid) for p in self.ports.values()]

    def plan(self) -> "Sync":
        """What a fresh daemon would put on an empty switch."""
        return Switch().sync(self)


def gateways(k: Kernel | None = None) -> Kernel:
    """Three gateways, one per port, resolved, in both families."""
    k = k or Kernel()
    for port, gw, gw6, mac in ((P1, GW1, GW1_6, MAC1), (P2, GW2, GW2_6, MAC2), (P3, GW3, GW3_6, MAC3)):
        k.neigh(port, gw, mac).neigh(port, gw6, mac)
    return k


@dataclass(frozen=True)
class Want:
    """What the switch should hold of ours: every flow (route flows included) and every group."""

    flows: frozenset[Flow]
    groups: dict[int, GroupSpec]


@dataclass
class Sync:
    want: Want
    group_upserts: list[GroupOp]
    flow_ops: list[FlowOp]
    group_deletes: list[GroupOp]
    unresolved: frozenset[NeighbourKey]
    targets: dict  # destination network -> group id or pipeline.KERNEL

    @property
    def ops(self) -> list:
        return self.group_upserts + self.flow_ops + self.group_deletes

    def counts(self) -> Counter:
        return Counter(f"{'group' if isinstance(o, GroupOp) else 'flow'}-{o.op.value}" for o in self.ops)


def owned_groups(table: OFTable) -> dict[int, GroupSpec]:
    """What the daemon reads back: groups in taprouter's id range only."""
    return {gid: spec for gid, spec in table.groups.items() if pipeline.owns_group(gid)}


ROUTE_COOKIE = pipeline.cookie(pipeline.Owner.ROUTE)


def read_back(table: OFTable, meters: dict | None = None) -> ReadBack:
    """What the daemon reads back: route flows in the form taprouter writes them as prefix -> target,
    everything else of ours as flows (readback.decode_all does this on the wire; tests/test_readback.py),
    groups in our range; meters as they would be (the table model has none)."""
    routes, others = {}, set()
    for flow in table.snapshot():
        if not pipeline.is_ours(flow.cookie):
            continue
        dst = [m for m in flow.match.fields if m.name in ("ipv4_dst", "ipv6_dst")]
        if flow.cookie == ROUTE_COOKIE and flow.table in (pipeline.Table.FIB4, pipeline.Table.FIB6):
            version = 4 if flow.table == pipeline.Table.FIB4 else 6
            bits = 32 if version == 4 else 128
            length = 0 if not dst else bits if dst[0].mask is None else bin(dst[0].mask).count("1")
            pk = pfx.pack(version, dst[0].value if dst else 0, length)
            for target in [pipeline.KERNEL] + [a.group_id for a in flow.actions if isinstance(a, ToGroup)]:
                if pipeline.route_flow(pk, target) == flow:
                    routes[pk] = target
                    break
            else:
                others.add(flow)
        else:
            others.add(flow)
    if meters is None:  # the punt meters of the ports the policing table names
        ports = {f.value for flow in others if flow.table == pipeline.Table.PUNT_POLICE
                 for f in flow.match.fields if f.name == "in_port"}
        meters = pipeline.meters_for(ports)
    return ReadBack(routes, frozenset(others), owned_groups(table), meters)


def flow_ops(plan: Pass) -> list[FlowOp]:
    """A pass's flow operations in the order they go out, route flows as typed flows."""
    routes = [FlowOp(op, pipeline.route_flow(pk, target)) for op, pk, target in plan.routes]
    return plan.early + routes + plan.late


def apply(table: OFTable, plan: Pass, meters: dict | None = None) -> None:
    """A pass applied as a switch applies what the daemon writes, in order; meters into `meters`
    (the table model has none) when given."""
    if meters is not None:
        meters.update((op.meter_id, op.spec) for op in plan.meters)
    table.apply(plan.group_upserts)
    table.apply(flow_ops(plan))
    table.apply(plan.group_deletes)
    if meters is not None:
        for op in plan.meter_deletes:
            meters.pop(op.meter_id, None)


@dataclass
class Switch:
    """The daemon's side of one switch (its Planner), and the switch it writes to."""

    table: OFTable = field(default_factory=lambda: OFTable(invalid_ttl_to_controller=True))
    pass_routes: int = PASS_ROUTES
    planner: Planner | None = None
    seen: tuple = ({}, None)  # the kernel routes and state of the last sync
    passes: list[int] = field(default_factory=list)  # how many prefixes each pass of the last sync took
    last: Pass | None = None  # the last pass planned
    meters: dict = field(default_factory=dict)  # the switch's meters, by id (the table model has none)

    @property
    def fib(self):
        return self.planner.fib

    def sync(self, kernel: Kernel, adopt: bool = False, check_restart: bool = True, policies=()) -> Sync:
        """Planner.plan, as the daemon's reconcile thread calls it, until its backlog is drained (the
        last pass's Sync; `passes` has each one's size). The changes are what the mirror would hand
        over since the last sync; with `adopt` (or the first time), the switch is read back first."""
        routes, state = kernel.mirror(), kernel.state()
        read = None
        if adopt or self.planner is None:
            self.planner = Planner(self.pass_routes)
            read = read_back(self.table, self.meters)
            self.seen = ({}, None)
        last_routes, last_state = self.seen
        dirty = {pk: entry for pk, entry in routes.items() if entry != last_routes.get(pk)}
        gone = [pk for pk in last_routes if pk not in routes]
        # As the mirror says: whether some prefix lost a route (at any metric).
        withdrawn = any(not set(last_routes.get(pk, ())[::2]) <= set((routes.get(pk) or ())[::2])
                        for pk in dirty.keys() | gone)
        changes = MirrorChanges(dirty, last_state != state, False, withdrawn, gone)
        self.seen = (routes, state)
        self.passes = []
        while True:
            before = len(self.planner.backlog) + len(dirty) + len(gone)
            view = KernelView(changes, routes, lambda: list(routes.items()), state)
            plan = self.planner.plan(view, SwitchView(kernel.port_inputs(), read), now=0.0, policies=policies)
            self.passes.append(before - len(self.planner.backlog))
            done = not len(self.planner.backlog)
            result = self._check(kernel, plan, check_restart and done, policies)
            if done:
                return result
            read, dirty, gone = None, {}, []
            changes = MirrorChanges({}, False, False, False, [])

    def _check(self, kernel: Kernel, plan: Pass, check_restart: bool, policies=()) -> Sync:
        # The log's figures are counted where the ops are made: they must agree with the ops.
        assert plan.route_counts == tuple(sum(1 for op, _pk, _t in plan.routes if op is kind)
                                          for kind in (Op.ADD, Op.MODIFY, Op.DELETE))
        self.last = plan
        apply(self.table, plan, self.meters)
        fib = self.planner.fib
        route_flows = {pipeline.route_flow(pk, t if type(t) is int else pipeline.KERNEL) for pk, t in fib.targets.items()}
        policy_flows = frozenset().union(*self.planner.policy_table.installed.values())
        want = Want(self.planner.base_flows | route_flows | policy_flows,
                    {**fib.switch_groups, **self.planner.policy_table.groups})
        assert {f for f in self.table.snapshot() if pipeline.is_ours(f.cookie)} == want.flows
        assert owned_groups(self.table) == want.groups
        if check_restart:
            # Incremental and from scratch agree: a daemon restarted now changes nothing.
            fresh = Planner()
            routes, state = kernel.mirror(), kernel.state()
            view = KernelView(MirrorChanges({}, True, True, False, []), routes, lambda: list(routes.items()), state)
            again = fresh.plan(view, SwitchView(kernel.port_inputs(), read_back(self.table, self.meters)), now=0.0,
                               policies=policies)
            assert not again, f"a restart would change things: {again}"
        targets = {pfx.to_network(pk): (t if type(t) is int else pipeline.KERNEL) for pk, t in fib.targets.items()}
        return Sync(want, plan.group_upserts, flow_ops(plan), plan.group_deletes, fib.unresolved, targets)

    def send(self, dst: str, **kw):
        return fate(self.table, packet(dst, **kw))


def installed(kernel: Kernel) -> Switch:
    sw = Switch()
    sw.sync(kernel)
    return sw


def packet(dst: str, ttl: int = 64, sport: int = 1000, in_port: Port = HOST) -> dict[str, int]:
    ip = ipaddress.ip_address(dst)
    pkt = {"in_port": in_port.number, "eth_src": HOST_MAC, "eth_dst": in_port.mac, "ip_proto": IPPROTO_UDP,
           "udp_src": sport, "udp_dst": 53, "ttl": ttl}
    if ip.version == 4:
        pkt.update(eth_type=ETH_TYPE_IPV4, ipv4_src=int(ipaddress.ip_address("10.0.4.50")), ipv4_dst=int(ip))
    else:
        pkt.update(eth_type=ETH_TYPE_IPV6, ipv6_src=int(ipaddress.ip_address("2001:db8:4::50")),
                   ipv6_dst=int(ip))
    return pkt


PORT_MAC = {p.number: p.mac for p in PORTS}


def fate(table: OFTable, pkt: dict[str, int]):
    """KERNEL, EXPIRED, or (port number, next-hop MAC), checking everything else about the packet.

    Forwarded: exactly one copy, eth_src rewritten to the egress port's MAC, TTL one less, nothing
    else changed, nothing to the controller. To the kernel: the packet as it arrived, and only that.
    """
    result = table.process(pkt)
    if result.ttl_expired:
        assert result.controller_packets == (pkt,) and not result.outputs, result
        return EXPIRED
    if result.to_controller:
        assert result.controller_packets == (pkt,) and not result.outputs, result
        return KERNEL
    assert len(result.outputs) == 1, result
    out = result.outputs[0]
    expected = dict(pkt, eth_src=PORT_MAC[out.port], eth_dst=out.packet["eth_dst"], ttl=pkt["ttl"] - 1)
    # in_port is pipeline metadata, not on the wire: a bucket may rewrite it (see the hairpin test).
    assert dict(out.packet, in_port=None) == dict(expected, in_port=None), result
    return (out.port, out.packet["eth_dst"])


def group_of(sw: Switch, dst: str) -> GroupSpec:
    """The group the route flow for dst names."""
    net = ipaddress.ip_network(dst)
    (flow,) = [f for f in sw.table.snapshot() if f.key == pipeline.route_flow(pfx.from_network(net), pipeline.KERNEL).key]
    (action,) = flow.actions
    return sw.table.groups[action.group_id]


def flows_per_group(flows) -> Counter:
    return Counter(a.group_id for f in flows for a in f.actions if isinstance(a, ToGroup))
