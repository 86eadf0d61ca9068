"""One configured router, its parts joined: TAPs, kernel mirror, BIRD, planner and switch session.

Who owns what (each is written down in its own module too):
- the netlink watcher's thread writes the mirror, which has its own lock;
- os-ken's receive thread sets up TAPs (TapSet, its own lock) and hands every other switch
  event to `events`, a deque, for the reconcile thread; it also takes the xids of counter polls
  out of `count_xids` (set operations are atomic);
- the policy source's thread replaces `policies` whole (a tuple) and wakes the reconcile thread;
- the reconcile thread alone runs `step`: it owns the session, the planner, expiry and counters,
  and publishes `status` and `policy_report`, each replaced whole, for the threads that read them;
- the resolver's thread runs `ip neigh` for the next hops a pass hands it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

from os_ken.ofproto import ofproto_v1_3 as ofp

from .. import gctune, paths
from ..bridge.holder import HolderClient
from ..bridge.relay import Relay
from ..bridge.taps import TapSet
from ..config import HaConfig, RouterConfig
from ..ha.roles import Role
from ..reconfig import RouterChange
from ..control.metrics import Histogram
from ..mac import mac_to_int
from ..routing import kernel
from ..routing.bird import BirdSupervisor
from ..routing.mirror import KernelMirror
from ..policy.model import Policy, State
from ..routing.netlink import Watcher
from ..routing.model import NeighbourKey
from .. import prefix as pfx
from .policyreport import PolicyReport, States
from .planner.reconcile import KernelView, Pass, Planner, PortInput, SwitchView
from .openflow import errors
from .refusals import Refusals
from .ha import HaControl
from .session.switch import Answered, Connected, Counted, Errored, FlowRemoved, SessionEvent, SwitchSession
from .session.tls import peer

LOG = logging.getLogger("taprouter.core")

OFFLOAD_RECOUNT = 1.0  # seconds between recounts of the FIB for status (a walk over the hop sets)
COUNT_INTERVAL = 2.0  # seconds between polls of the policy table's counters
ROLE_RETRY = 1.0  # seconds before a role request the switch has not confirmed is sent again


class Router:
    def __init__(self, config: RouterConfig, relay: Relay, wake: Callable[[], None], pass_routes: int,
                 ha: HaConfig | None = None, database: str = "") -> None:
        self.config = config
        self.name = config.name
        self.holder = HolderClient(paths.router_dir(config.name))
        self.taps = TapSet(config, self.holder, relay)
        self.mirror = KernelMirror(wake)
        self.watcher = Watcher(config.netns, self.mirror)
        self.resolver = kernel.Resolver(config.name, config.netns)
        # BIRD's BGP neighbours (addresses), replaced whole by the supervisor's thread; None: unknown.
        self.bgp_peers: frozenset | None = None
        self.bird = (BirdSupervisor(config.name, config.netns, config.bird.config, paths.router_dir(config.name),
                                    on_peers=self._bgp_peers_changed)
                     if config.bird is not None else None)
        self.planner = Planner(pass_routes)
        self.session = SwitchSession(config.name)
        # HA: the lease and the role (controller/ha.py); None with HA off (every switch is ours).
        self.ha = (HaControl(ha, database, config.name, config.dpid,
                             self.bird.control if self.bird is not None else None, wake)
                   if ha is not None else None)
        self._master_generation = 0  # the generation we last became master with; 0: not master
        # For the policy source: only an HA master writes policies' states and counters to the store.
        self.writes_store = self.ha is None
        # Hosts whose flows a takeover holds: the kernel is asked to resolve them, so that their
        # flows are the kernel's again before the sweep rather than sent to it after.
        self._held_hosts: frozenset[NeighbourKey] = frozenset()
        if self.ha is not None:
            self.session.may_write = False
        self.events: deque[SessionEvent] = deque()
        self.count_xids: set[int] = set()
        self.drop_xids: set[int] = set()  # requests for the ingress drops' counters (routers with VLANs)
        self._expiry: deque[tuple[str, int, float]] = deque()  # from the policy source, in order
        self._applied = threading.Condition()  # guards the tickets below
        self._ticket = self._policies_ticket = self._applied_ticket = 0
        self._ticket_of: dict[int, int] = {}  # barrier xid -> the policies' ticket it carries
        self.policies: tuple[Policy, ...] = ()  # this router's, from the store
        self.expired: dict[int, float] = {}  # policy id -> when its timeout fired (wall clock)
        self._expiries = 0  # changes to `expired` so far: what was derived from it is stale when this moved
        # What the last pass planned with, and what the last report was made of: with 10,000
        # policies, each costs milliseconds to build again, and most passes change neither.
        self._active: tuple[tuple, list[Policy]] = ((), [])
        self._reported: tuple = ()
        self.counters: dict[int, tuple[int, int]] = {}  # policy id -> packets, bytes on the switch
        self.policy_report = PolicyReport.given({})
        self._policy_states: dict[int, tuple[State, str]] = {}
        self.refusals = Refusals()
        self._counted_at = 0.0
        self._wake = wake
        self._planned = False  # a pass has gone out since the last read-back: counts are the switch's
        self._offload: dict[str, int] = {}
        self._counted = 0.0
        self._last_reconcile: dict[str, int] = {}
        # For the control socket and /metrics, each replaced whole by the thread that owns it:
        # os-ken's receive thread counts connections and takes the punt meters' drops; the
        # reconcile thread publishes the last pass and the histogram of their durations.
        self.connections = 0
        self.connected_since: float | None = None  # wall clock
        # Since when no switch is connected (monotonic; none yet at start), until core.py drops the
        # TAPs' carrier for it; None while one is connected or once carrier is dropped.
        self.gone_since: float | None = time.monotonic()
        self.punt_drops: dict[int, int] = {}  # meter id -> packets its bands dropped
        self.ingress_drops: dict[tuple[int, str], int] = {}  # (port, reason) -> packets table 0 dropped
        self.last_pass: dict | None = None
        self.passes = Histogram()
        self.status: dict = self._status()

    # --- lifecycle (main thread) --------------------------------------------------------------

    def start(self) -> None:
        """The netns and its sysctls, the TAPs a previous daemon left with the holder (before any
        switch connects), the watcher, the resolver and BIRD."""
        kernel.prepare(self.name, self.config.netns)
        self.taps.adopt()
        self.watcher.start()
        self.resolver.start()
        if self.bird is not None:
            self.bird.start()
        if self.ha is not None:
            self.ha.start()

    def stop(self) -> None:
        if self.ha is not None:
            self.ha.stop()  # the lease goes with the session: the standby takes over at once
        self.watcher.stop()
        self.resolver.stop()
        if self.bird is not None:
            self.bird.stop_supervising()  # BIRD keeps running: its sessions must outlive our restart

    def _bgp_peers_changed(self, peers: frozenset | None) -> None:
        """From BIRD's supervisor: the punt flows admit BGP from these peers only; a pass follows."""
        self.bgp_peers = peers
        self._wake()

    def reconfigure(self, change: RouterChange) -> None:
        """A reload changed this router's ports or addresses (main thread or a control socket
        thread, one reload at a time). The config is swapped first, so the next pass plans
        without a removed port; TAPs then go, come (if the switch has the port) or are readdressed.
        The netlink watcher sees the kernel follow and wakes the reconcile thread."""
        self.config = change.config
        self.taps.update(change.config)
        for port in change.removed:
            self.taps.remove(port)
        ports = dict(self.session.ports)  # the switch's, as last described (a copy: its thread writes)
        for number in dict.fromkeys(port.number for port in change.added):  # a port's new VLANs: once
            state = ports.get(number)
            if state is None:
                LOG.warning("router %s: port %d added to the config is not on the switch (yet)", self.name,
                            number)
            else:
                self.taps.port_ready(state)
        for moved in change.readdressed:
            self.taps.readdress(moved.port, moved.added, moved.removed)
        self._wake()

    def hand_over(self, event: SessionEvent) -> None:
        """From os-ken's thread: an event for the reconcile thread."""
        self.events.append(event)
        self._wake()

    # --- the reconcile thread -----------------------------------------------------------------

    def step(self, now: float) -> bool:
        """Take the session's events, then, if the switch is in sync, one pass. Returns whether
        changes are left for another pass (the rest of a table load)."""
        session = self.session
        events = self.events
        # What the policy source handed over, taken whole: a ticket is applied only by a pass that
        # also saw the expiry and re-enablings handed over with it (set_policies may run meanwhile).
        with self._applied:
            ticket, handed = self._policies_ticket, self.policies
            expiry, self._expiry = self._expiry, deque()
        for what, pid, when in expiry:
            if what == "expired":
                self.expired[pid] = when
            else:
                self.expired.pop(pid, None)
            self._expiries += 1
        while events:
            event = events.popleft()
            if isinstance(event, (FlowRemoved, Counted)):
                if event.dp is session.dp:
                    self._policy_event(event)
                continue
            if isinstance(event, Answered) and event.xid in self._ticket_of:
                self._mark_applied(self._ticket_of.pop(event.xid))
            elif isinstance(event, Errored) and event.dp is session.dp and not errors.is_role_error(event.type,
                                                                                                     event.code):
                self._refused(event)
            elif isinstance(event, Connected):
                self.refusals.clear()  # a switch afresh may take what the last one refused
            session.handle(event, now)
        session.tick(now)
        if self.ha is not None and not self._ha_step(now):
            self._ticket_of.clear()
            self._planned = False
            self.status = self._status()
            return False
        if not session.synced:
            self._ticket_of.clear()  # their barriers will not be answered, or a read-back follows them
            self._planned = False
            self.status = self._status()
            self._report()
            return False
        if not self.watcher.ready.is_set():
            return False  # the dump is not in yet; planning now would delete every route flow
        if not session.in_flight.room():
            LOG.warning("router %s: the switch has not answered a barrier in %.0f s; sending anyway", self.name,
                        session.in_flight.wait)
        started = time.monotonic()
        mirror = self.mirror
        state = mirror.snapshot()
        kernel_view = KernelView(mirror.take_changes(), mirror.routes, mirror.items, state)
        # Until the policy source first hands them over (ticket 0: the store not read yet, or not
        # readable), the policy table stays as the switch holds it, rather than emptied.
        policies = self._active_policies(handed) if ticket else None
        plan = self.planner.plan(kernel_view, SwitchView(self._ports(), session.take_read_back(), self.bgp_peers), now, policies)
        planned = time.monotonic()
        if plan:
            self._ticket_of[session.send(plan)] = ticket
        elif self._ticket_of:
            # Nothing left to send, but the last pass is still on its way: the switch has these
            # policies once it answers that pass's barrier.
            last = next(reversed(self._ticket_of))
            self._ticket_of[last] = max(self._ticket_of[last], ticket)
        elif session.resync_at is None:
            self._mark_applied(ticket)  # nothing to send: the switch has them already
        # (With a resync due, what was sent may not all be on the switch: the pass after the
        # read-back tells.)
        written = time.monotonic()
        if plan.adopted and self.planner.stale is not None:
            LOG.warning("router %s: holding %d stale route flows and %d groups the kernel lacks", self.name,
                        len(self.planner.stale), len(self.planner.stale.groups))
        self._planned = True
        if self.planner.stale is not None:
            if plan.adopted:
                self._held_hosts = held_neighbours(self.planner.stale.routes, state.addresses)
            self.resolver.request(plan.unresolved | self._held_hosts, state.links)
        else:
            self._held_hosts = frozenset()
            self.resolver.request(plan.unresolved, state.links)
        self._log(plan, started, planned, written)
        self.status = self._status(recount=bool(plan))
        if plan.policy_states is not None:
            self._policy_states = plan.policy_states
        if now - self._counted_at >= COUNT_INTERVAL:
            if policies:
                self.count_xids.add(session.count())
            if any(p.vlans for p in self.config.ports):
                self.drop_xids.add(session.count_drops())
            session.count_meters()
            self._counted_at = now
        self._report()
        if self.planner.stale is not None and self.ha is not None and self.ha.converged(now):
            self._sweep(now)
        if plan.full:
            gctune.release()  # a read-back's or a re-dump's memory, back to the system
        return len(self.planner.backlog) > 0

    # --- HA (the reconcile thread) ----------------------------------------------------------------

    def relays(self) -> bool:
        """Whether the relay may send PacketOuts (the relay's thread): always without HA; with it,
        while the switch has confirmed this connection as master."""
        if self.ha is None:
            return True
        confirmed = self.session.role_confirmed
        return confirmed is not None and confirmed[0] == ofp.OFPCR_ROLE_MASTER

    def _ha_step(self, now: float) -> bool:
        """The role from the lease; the switch asked for it; whether this pass may plan. A new
        master reads the switch back first, and holds what its kernel lacks (planner/stale.py)."""
        ha, session = self.ha, self.session
        role = ha.update(now)
        generation = ha.lease.state.generation
        want = None
        if role is Role.MASTER:
            want = (ofp.OFPCR_ROLE_MASTER, generation)
        elif role is Role.STANDBY and generation:
            want = (ofp.OFPCR_ROLE_SLAVE, generation)
        # STARTING: the generation is not known; FENCED: the switch's role is left as it is.
        if want is not None and session.dp is not None and session.role_confirmed != want and (
                session.role_sent != want or now - session.role_asked >= ROLE_RETRY):
            session.request_role(*want, now)
        master = role is Role.MASTER and session.role_confirmed == want and session.dp is not None
        session.may_write = master
        self.writes_store = master
        if not master:
            if self._master_generation and role is not Role.FENCED:
                LOG.warning("router %s: no longer master; writing nothing to the switch", self.name)
                self._master_generation = 0
            return False
        if self._master_generation != generation:
            LOG.warning("router %s: master with generation %d; reading the switch back, holding what the kernel "
                        "lacks until BIRD has converged", self.name, generation)
            self._master_generation = generation
            threading.Thread(target=kernel.flush_unresolved, args=(self.name, self.config.netns),
                             name=f"neigh-flush-{self.name}", daemon=True).start()
            self.planner.hold_next = True
            ha.holding(now)
            session.read_again(now)
            return False
        return True

    def _sweep(self, now: float) -> None:
        sweep = self.planner.sweep_stale()
        LOG.warning("router %s: converged (%s); sweeping %d stale route flows and %d groups", self.name,
                    self.ha.converged_by, sweep.route_counts[2], len(sweep.group_deletes))
        if sweep:
            self.session.send(sweep)

    def _policy_event(self, event: FlowRemoved | Counted) -> None:
        """A policy's timeout fired: it is expired, and not planned again until it is re-enabled;
        or its counters came."""
        if isinstance(event, Counted):
            self.counters = event.counters
            return
        pid = event.cookie & 0xFFFFFFFF
        if pid not in self.expired and event.reason in (ofp.OFPRR_IDLE_TIMEOUT, ofp.OFPRR_HARD_TIMEOUT):
            self.expired[pid] = time.time()
            self._expiries += 1
            LOG.info("router %s: policy %d expired (%s timeout); its other flows go", self.name, pid,
                     "idle" if event.reason == ofp.OFPRR_IDLE_TIMEOUT else "hard")

    def _refused(self, event: Errored) -> None:
        table = self.planner.policy_table
        policy = self.refusals.note(errors.subject(event.data), errors.describe(event.type, event.code),
                                    {p.id: p for p in self.policies},
                                    {g: p for p, g in table.group_ids.by_policy.items()},
                                    {m: p for p, m in table.meter_ids.by_policy.items()})
        if policy is not None:
            LOG.error("router %s: the switch refused policy %s (%s); it is marked failed, and tried again when "
                      "it changes", self.name, policy.name, errors.describe(event.type, event.code))

    def _active_policies(self, handed: tuple[Policy, ...]) -> list[Policy]:
        """The enabled, unexpired policies the switch has not refused; the same list while none of
        that changed (the planner then looks at none of them)."""
        refusals = self.refusals
        if refusals:
            refusals.keep({p.id for p in handed if p.enabled})
        made_of = (handed, self._expiries, refusals.changes)
        if made_of != self._active[0]:
            active = [p for p in handed if p.enabled and p.id not in self.expired
                      and (not refusals or refusals.error(p) is None)]
            self._active = (made_of, active)
        return self._active[1]

    def _report(self) -> None:
        """A new report when something in it changed; its states are worked out by whoever reads them."""
        report = self.policy_report
        made_of = (self.policies, self._policy_states, self._expiries, self.refusals.changes, self.session.synced)
        if made_of != self._reported:  # element by element, identity first: cheap when nothing changed
            self._reported = made_of
            states = States(self.policies, self._policy_states, dict(self.expired), made_of[-1],
                            self.refusals.snapshot())
        elif self.counters is report.counters:
            return
        else:
            states = report.states_of  # only counters came
        # `counters` is replaced whole on each poll, never changed in place: no copy.
        self.policy_report = PolicyReport(states, dict(self.expired), self.counters)

    def set_policies(self, policies: tuple[Policy, ...], reenabled: Iterable[int] = (),
                     expired: Mapping[int, float] | None = None) -> int:
        """From the policy source's thread: this router's policies, those re-enabled since (their
        expiry is forgotten) and, at start, those the store has as expired; handed over by replacing
        the tuple and through a queue, then a pass. Returns a ticket for wait_applied."""
        with self._applied:
            self._ticket += 1
            ticket = self._ticket
            self._expiry.extend(("expired", pid, when) for pid, when in (expired or {}).items())
            self._expiry.extend(("reenabled", pid, 0.0) for pid in reenabled)
            self.policies = policies
            self._policies_ticket = ticket
        self._wake()
        return ticket

    def wait_applied(self, ticket: int, timeout: float) -> bool:
        """Whether a pass planned with the policies of `ticket` (or later) reached the switch, and
        the switch answered its barrier, within `timeout` seconds."""
        with self._applied:
            return self._applied.wait_for(lambda: self._applied_ticket >= ticket, timeout)

    def _mark_applied(self, ticket: int) -> None:
        with self._applied:
            if ticket > self._applied_ticket:
                self._applied_ticket = ticket
                self._applied.notify_all()
        # Passes of older policies whose barriers went unanswered (a lost connection) wait no more.
        self._ticket_of = {xid: t for xid, t in self._ticket_of.items() if t > ticket}

    def _ports(self) -> list[PortInput]:
        ports = self.session.ports
        tagging = any(p.vlans for p in self.config.ports)  # else PortInput.vid None: flows as without VLANs
        return [PortInput(t.number, t.tap, mac_to_int(info.mac), info.link_up, t.vid if tagging else None)
                for t in self.config.taps if (info := ports.get(t.number)) is not None]

    def _log(self, plan: Pass, started: float, planned: float, written: float) -> None:
        counts = plan.counts()
        self._last_reconcile = counts
        self.last_pass = {"time": time.time(), "duration": written - started, "add": counts["add"],
                          "modify": counts["modify"], "delete": counts["delete"], "groups": counts["groups"]}
        self.passes = self.passes.observe(written - started)
        if any(counts.values()) or plan.adopted or plan.full:
            # Sending (encoding, then writing) blocks while the switch works through what came
            # before, so a large pass's time is mostly the switch's; the split says which side a
            # slow pass waited on.
            LOG.info("router %s: reconciled %d flows, %d groups in %.1f ms: %d added, %d modified, "
                     "%d deleted, %d group changes (planning %.1f ms, sending %.1f ms)", self.name,
                     self.planner.flows_planned(), self.planner.groups_planned(), (written - started) * 1000,
                     counts["add"], counts["modify"], counts["delete"], counts["groups"],
                     (planned - started) * 1000, (written - planned) * 1000)

    def _status(self, recount: bool = False) -> dict:
        """What `taprouter status` shows of the switch, as of now (the reconcile thread's view).
        `recount`: a pass changed the FIB, so its counts are recounted now rather than within
        OFFLOAD_RECOUNT (a count is a sum over the hop sets, cheap beside the pass)."""
        session, dp = self.session, self.session.dp
        now = time.monotonic()
        if self._planned and (recount or not self._offload or now - self._counted > OFFLOAD_RECOUNT):
            self._offload = self.planner.offload(len(self.mirror.routes))
            self._counted = now
        return {
            "switch_connected": dp is not None,
            # Where the switch connected from, and over what: "tls" or "tcp".
            "switch_address": peer(dp.address) if dp is not None else None,
            "switch_transport": None if dp is None else "tls" if getattr(dp.socket, "over_tls", False) else "tcp",
            "switch_ports": {n: {"mac": p.mac, "link_up": p.link_up, "speed_kbps": p.speed_kbps} for n, p in session.ports.items()},
            "flows_installed": self.planner.flows_planned() if self._planned else None,
            "groups_installed": self.planner.groups_planned() if self._planned else None,
            "offload": self._offload if self._planned else {},
            "last_reconcile": self._last_reconcile, "switch_errors": session.errors,
            "netlink_resyncs": self.watcher.resyncs,
            "ha": self._ha_status(),
        }

    def _ha_status(self) -> dict | None:
        ha = self.ha
        if ha is None:
            return None
        lease = ha.lease.state
        stale = self.planner.stale
        return {"role": ha.role.value, "generation": lease.generation, "holder": lease.holder, "node": ha.node,
                "lease_error": lease.error or None, "stale_flows": len(stale) if stale is not None else 0}


def held_neighbours(held: Mapping[int, int], addresses) -> frozenset[NeighbourKey]:
    """The host entries among held route flows (a /32 or /128 inside a subnet of the router's own
    addresses), as the neighbours to resolve: (the TAP's ifindex, the host's address)."""
    subnets = [(a.ifindex, a.interface.network) for a in addresses if not a.interface.ip.is_link_local]
    found = set()
    for pk in held:
        net = pfx.to_network(pk)
        if net.prefixlen != net.max_prefixlen:
            continue
        ip = net.network_address
        for ifindex, subnet in subnets:
            if subnet.version == ip.version and ip in subnet and ip != subnet.network_address:
                found.add(NeighbourKey(ifindex, ip))
                break
    return frozenset(found)
