"""The JSON the control socket speaks: every answer's shape, written down once for both sides.

The daemon builds these from what it has published (never by waiting on the reconcile thread);
the server sends them as they are; `taprouter status` reads them, and builds the same
`RouterStatus` itself from the kernel when no daemon answers. Times are Unix times in seconds
(floats); durations are seconds; a field the daemon cannot know yet is null, never left out.

    GET  /v1/status[?router=R]            -> Status
    GET  /v1/policies[?router=R]          -> [PolicyEntry, ...]
    GET  /v1/lookup?router=R&address=A    -> Lookup
    GET  /v1/routes?router=R[&prefix=P][&limit=N][&after=CURSOR] -> RoutePage
    POST /v1/bird/reload {"router": R|null}                  -> BirdReload
    POST /v1/reload {"router": R|null}                       -> Reload
    POST /v1/policies/changed {"router": R, "names": [..]|null[, "generations": [B, A]]} -> PoliciesChanged
    any error                             -> {"error": "what went wrong"}
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict


class DaemonInfo(TypedDict):
    pid: int
    started: float | None  # when the daemon started (null only from a status file)
    # The daemon sends "control socket"; `taprouter status` says "status file" for a daemon that
    # does not answer on the socket but whose status file names a live pid.
    source: Literal["control socket", "status file"]


class SwitchStatus(TypedDict):
    connected: bool
    since: float | None  # when the current connection came up (null while none is up)
    address: str | None  # where it connected from, "HOST:PORT"
    transport: Literal["tcp", "tls"] | None
    reconnects: int  # connections after the first since the daemon started
    errors: int  # OpenFlow errors the switch sent


class PortCounters(TypedDict):
    """The TAP's kernel counters (what the relay wrote to it is rx, what it read tx)."""

    rx_packets: int
    tx_packets: int
    rx_bytes: int
    tx_bytes: int
    rx_dropped: int
    tx_dropped: int


class VlanStatus(TypedDict):
    """A VLAN's TAP on its port: its MAC is the port's; its carrier follows the port's link."""

    vid: int
    tap: str
    present: bool
    mac: str | None
    carrier: bool
    up: bool
    addresses: list[str]
    counters: PortCounters | None


class IngressDrops(TypedDict):
    """Frames the switch's ingress table dropped and counted, on a router with VLANs."""

    port: int
    reason: str  # unknown_vlan (a tag for a VLAN the port does not carry), double_tagged
    packets: int


class PortStatus(TypedDict):
    port: int  # the switch port number
    tap: str | None  # the untagged TAP (null: the port carries VLANs only)
    present: bool  # the (untagged) TAP exists in the router's netns
    mac: str | None
    carrier: bool  # the TAP's carrier, which follows the switch port's link
    up: bool  # the TAP is administratively up
    link_up: bool | None  # the switch port's link as the switch reports it (null: no switch)
    speed_kbps: int | None  # its current speed as the switch reports it (OpenFlow curr_speed; null: unknown)
    addresses: list[str]  # "10.0.1.1/24", "2001:db8:1::1/64"
    counters: PortCounters | None
    vlans: list[VlanStatus]  # the port's VLANs by id (empty: none configured)


class RouteCounts(TypedDict):
    kernel_routes: int  # the main table's, but for link-local and multicast ones (no FIB carries them)
    fib_entries: int  # route flows on the switch
    switched: int  # of those, forwarded by the switch through a group
    to_kernel: int  # of those, sent to the kernel (no usable next hop, blackholes, ...)
    unresolved_next_hops: int  # next hops waiting for the kernel to resolve their neighbour


class BirdProtocol(TypedDict):
    """`birdc show protocols all`, in BIRD's words (routing.birdctl.Protocol)."""

    name: str
    proto: str  # BGP, OSPF, Kernel, Device, Direct, Static
    table: str
    state: str  # up, down, start, flush
    since: str
    info: str  # Established, Running, Active, ...
    routes_imported: int | None
    routes_exported: int | None


class OspfNeighbour(TypedDict):
    protocol: str
    router_id: str
    state: str  # Full/DR, 2-Way/DROther, ...
    interface: str
    address: str


class BirdStatus(TypedDict):
    config: str  # the BIRD file
    pid: int | None  # null: not running
    protocols: list[BirdProtocol]
    ospf_neighbours: list[OspfNeighbour]
    error: str | None  # why BIRD could not be asked, or why it is not running


class PassSummary(TypedDict):
    """The last reconcile pass that ran (changed something or not)."""

    time: float | None
    duration: float | None  # seconds, planning and sending
    add: int
    modify: int
    delete: int
    groups: int  # group changes


class HaStatus(TypedDict):
    """The HA pair as this daemon sees it (README "High availability")."""

    role: str  # starting, standby, master or fenced
    generation: int  # the lease's generation: the OpenFlow generation id; 0 not known yet
    holder: str  # the node the lease row names
    node: str  # this daemon's node name
    lease_error: str | None  # why the database could not be asked, last time
    stale_flows: int  # route flows held since a takeover, until BIRD has converged


class RouterStatus(TypedDict):
    router: str
    dpid: str  # "0x1"
    netns: str
    netns_present: bool
    holder_pid: int | None  # the TAP descriptor holder
    daemon: DaemonInfo | None  # null: no daemon runs this router
    switch: SwitchStatus | None  # null without a daemon
    ports: list[PortStatus]  # every configured port, in port order
    flows_installed: int | None  # null until the first pass after a read-back
    groups_installed: int | None
    routes: RouteCounts | None
    bird: BirdStatus | None  # null when the router has no BIRD configured
    last_pass: PassSummary | None
    relay: dict[str, int] | None  # frames to_tap, to_switch, and each kind of error
    ingress_drops: list[IngressDrops]  # on a router with VLANs, per port and reason (else empty)
    ha: NotRequired[HaStatus | None]  # null (or absent) with HA off


class Status(TypedDict):
    daemon: DaemonInfo
    routers: list[RouterStatus]  # every router the daemon runs, or the one asked for


class PolicyEntry(TypedDict):
    """One policy and where it stands on its switch: what `taprouter policy list --json` prints."""

    router: str
    name: str
    priority: int
    match: dict  # policy.model.Match.as_dict()
    action: Literal["drop", "permit", "forward", "police"]
    state: Literal["installed", "pending", "disabled", "expired", "failed"]
    error: str | None
    packets: int
    bytes: int


class NextHop(TypedDict):
    via: str | None  # the gateway; null for a connected destination
    port: int | None  # the switch port (null: the kernel's interface is no switch port)
    tap: str | None
    mac: str | None  # the neighbour's MAC; null while unresolved


class SwitchEntry(TypedDict):
    """What the switch does with the address: the FIB flow it hits and that flow's target."""

    prefix: str | None  # the FIB entry's destination; null: a table miss (to the kernel)
    table: int | None
    priority: int | None
    target: Literal["group", "kernel"]
    group: int | None  # the group id when target is "group"
    group_type: Literal["indirect", "select"] | None
    next_hops: list[NextHop]  # one per bucket


class KernelEntry(TypedDict):
    prefix: str | None  # the route the kernel picks; null: no route
    type: str | None  # unicast, blackhole, unreachable, prohibit, local
    protocol: str | None  # kernel, static, bird, ...
    next_hops: list[NextHop]


class Lookup(TypedDict):
    router: str
    address: str
    switch: SwitchEntry
    kernel: KernelEntry
    agree: bool  # the switch's entry is the kernel's route, to the same next hops


class RouteRow(TypedDict):
    """One kernel route (main table, as the mirror holds it) and what the switch does with it."""

    prefix: str
    metric: int  # the best of its metrics (the one the kernel uses)
    other_metrics: list[int]  # further routes to the same prefix, worse metrics
    type: Literal["unicast", "other"]  # other: blackhole, unreachable, ...: the kernel decides
    next_hops: list[NextHop]  # mac: the gateway's (null for a connected route, or unresolved)
    fib_target: Literal["group", "kernel"] | None  # the switch's FIB entry for it; null: none
    group: int | None


class RoutePage(TypedDict):
    """Kernel routes inside `prefix` (both families' every route when null), ordered by family,
    prefix length, then address; at most `limit` (50 unless given, 1000 at most). `next` is the
    cursor of the following page (pass it as after=), null on the last. The order comes from an
    index of the mirror's prefixes; when the mirror changed since it was built, this page comes
    from the old index (fresh is false: a route added since is not listed yet, one removed is left
    out) while a new one is built."""

    router: str
    prefix: str | None
    routes: list[RouteRow]
    next: str | None
    kernel_routes: int  # the mirror's routes, all of them
    fresh: bool


class BirdReloadResult(TypedDict):
    router: str
    reloaded: bool
    message: str  # BIRD's answer, or why it was not asked (no BIRD configured, a broken file)


class BirdReload(TypedDict):
    results: list[BirdReloadResult]  # one per router asked (all with BIRD when router was null)


class Reload(TypedDict):
    """The config file re-read: what changed, or why nothing did."""
    applied: bool  # false: the file fails validation, or changes what only a restart can; nothing changed
    changes: list[str]  # "router R: port N (TAP) added", "router R: added (...)", ... (empty: nothing changed)
    errors: list[str]  # "FILE: KEY: why", when not applied; or "router R: not started: why" (the rest applied)
    bird: list[BirdReloadResult]  # BIRD reconfigured as by /v1/bird/reload (empty when not applied)


class PoliciesChanged(TypedDict):
    router: str
    names: list[str] | None  # as asked; null: every policy of the router
    accepted: bool  # the daemon re-read them from the database
    applied: bool  # and the switch has them (it answered the barrier after their flows)
    error: str | None  # why they were not re-read (the database cannot be read), or null
