"""Building a lab's plan on this machine, and removing what the journal says was built.

Every bridge, veth, netns, router and process is written to the journal before it is made (a
process's pid right after it started), so `teardown` needs the journal alone: not the topology
file, which may have changed or gone since. Processes are signalled by pid, and only when their
command line still names the lab's own run directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

from . import netdev
from .journal import Journal
from .plan import LabPlan

STOP_WAIT = 10.0


class BuildError(RuntimeError):
    pass


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ovs_running() -> str | None:
    """Why Open vSwitch cannot be used, or None."""
    if shutil.which("ovs-vsctl") is None:
        return "ovs-vsctl is missing (Debian package openvswitch-switch)"
    try:
        proc = subprocess.run(["ovs-vsctl", "--timeout=5", "show"], capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return "ovs-vsctl did not answer within 5 s"
    if proc.returncode != 0:
        return (f"Open vSwitch is not running ({proc.stderr.strip()}); scripts/ovs-start.sh "
                "starts ovsdb-server and ovs-vswitchd")
    return None


def ensure_ovs() -> str | None:
    """Start Open vSwitch with the project's script when it is not running and the script is at
    hand (a checkout); returns why it cannot be used, or None."""
    why = ovs_running()
    script = Path(__file__).resolve().parents[2] / "scripts" / "ovs-start.sh"
    if why is None or not script.exists() or shutil.which("ovs-vsctl") is None:
        return why
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=60)
    return ovs_running() if proc.returncode == 0 else f"{script} failed: {proc.stderr.strip()}"


def up(plan: LabPlan, journal: Journal) -> None:
    """Build everything but wait for nothing: the daemons converge while the caller waits."""
    topology = plan.topology
    plan.run_dir.mkdir(parents=True, exist_ok=True)
    journal.record("lab", plan.prefix, topology=str(topology.path), run_dir=str(plan.run_dir))
    args: list[str] = []
    ports: dict[str, int] = {}
    for bridge in plan.bridges:
        journal.record("bridge", bridge.name, node=bridge.node)
        if bridge.router:
            ports[bridge.node] = free_tcp_port()
            args += netdev.router_bridge(bridge.name, bridge.dpid)
        else:
            args += netdev.learning_bridge(bridge.name)
    netdev.vsctl(args)
    # The daemons take longest to start: they start first and boot while the wires are made.
    for router in topology.routers:
        start_router(plan, journal, router.name, ports[router.name])
    for host in (*topology.hosts, *topology.peers):
        name = plan.netns_of(host.name)
        journal.record("netns", name, node=host.name)
        netdev.sh("ip", "netns", "add", name)
        netdev.run_in(name, ["ip link set lo up"] + [f"ip addr add {a} dev lo" for a in host.loopback]
                      + ["sysctl -qw net.ipv4.ip_forward=1", "sysctl -qw net.ipv6.conf.all.forwarding=1"]
                      * (host.daemon is not None))
    args = []
    for wire in plan.wires:
        journal.record("veth", wire.a.veth, peer=wire.b.veth)
        netdev.sh("ip", "link", "add", wire.a.veth, "type", "veth", "peer", "name", wire.b.veth)
        for end in (wire.a, wire.b):
            if end.netns is None:
                netdev.sh("ip", "link", "set", end.veth, "up")
                args += netdev.bridge_port(end.bridge, end.veth, end.ofport)
                continue
            host = next(h for h in (*topology.hosts, *topology.peers) if h.name == end.node)
            netdev.sh("ip", "link", "set", end.veth, "netns", end.netns)
            # The default route goes with the first interface that can reach the gateway.
            addresses = host.interface(end.interface) or ()
            gateways = [g for g in host.gateways if any(g in a.network for a in addresses)]
            netdev.run_in(end.netns, netdev.interface_script(end.interface, end.veth, addresses, gateways))
    netdev.vsctl(args)
    for peer in topology.peers:
        start_peer(plan, journal, peer.name)
    # A switch told of its controller before the daemon listens retries after a second or more of
    # back-off, and the router's TAPs (so its OSPF) wait for the switch: tell it once it listens.
    for router in topology.routers:
        wait_listening(ports[router.name], router.name, journal)
        netdev.vsctl(netdev.controller(plan.bridge_of(router.name).name, f"tcp:127.0.0.1:{ports[router.name]}"))


def listening(port: int) -> bool:
    """Whether something listens on 127.0.0.1:port (the root netns's /proc/net/tcp, state 0A)."""
    wanted = f"0100007F:{port:04X}"
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return False
    return any(fields[1] == wanted and fields[3] == "0A" for fields in (line.split() for line in lines))


def wait_listening(port: int, router: str, journal: Journal, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    pid = next(int(e.data["pid"]) for e in reversed(journal.entries()) if e.kind == "process" and e.name == router)
    while not listening(port):
        _reap(pid)
        if not Path(f"/proc/{pid}").exists() or time.monotonic() > deadline:
            raise BuildError(f"router {router}: its daemon (pid {pid}) is not listening on 127.0.0.1:{port}; "
                             f"see its daemon.log")
        time.sleep(0.02)


# --- processes -------------------------------------------------------------------------------------

def _spawn(cmd: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        out.write(f"===== {time.strftime('%H:%M:%S')} lab: {' '.join(cmd)}\n".encode())
        out.flush()
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)


def start_router(plan: LabPlan, journal: Journal, router: str, port: int | None = None) -> int:
    """Start a router's own taprouter daemon (which starts the router's BIRD); returns its pid."""
    config = plan.router_config(router)
    home = plan.router_dir(router)
    if port is None:  # a restart: the switch still points at the port the daemon listened on
        port = next(int(e.data["port"]) for e in journal.of("router") if e.name == router)
    else:
        journal.record("router", router, config=str(config), run_dir=str(home), port=port,
                       netns=plan.netns_of(router))
    home.mkdir(parents=True, exist_ok=True)
    config.write_text(yaml.safe_dump(plan.daemon_config(router, port), sort_keys=False))
    env = {**os.environ, "TAPROUTER_RUN_DIR": str(home)}
    proc = _spawn([sys.executable, "-m", "taprouter.cli", "run", "-c", str(config)], home / "daemon.log", env)
    journal.record("process", router, pid=proc.pid, marker=str(config), role="taprouter")
    return proc.pid


def start_peer(plan: LabPlan, journal: Journal, peer: str) -> int:
    """Start a peer's BIRD in its netns, in the foreground of a process of its own session.
    `ip netns exec` execs BIRD, so the pid is BIRD's."""
    spec = plan.topology.peer(peer)
    if spec.daemon == "frr":
        return start_frr(plan, journal, peer)
    if spec.daemon == "exabgp":
        return start_exabgp(plan, journal, peer)
    sock = plan.bird_socket(peer)
    sock.parent.mkdir(parents=True, exist_ok=True)
    proc = _spawn(["ip", "netns", "exec", plan.netns_of(peer), "bird", "-f", "-c", str(spec.config),
                   "-s", str(sock)], plan.run_dir / "peers" / f"{peer}.log")
    journal.record("process", peer, pid=proc.pid, marker=str(sock), role="bird")
    return proc.pid


def start_frr(plan: LabPlan, journal: Journal, peer: str) -> int:
    """Start zebra, then the peer's other FRR daemons, each in the foreground in the peer's netns,
    with their pid files, sockets and logs in a directory of the peer's own; returns zebra's pid."""
    from .topology import FRR_DIR, frr_daemons
    spec = plan.topology.peer(peer)
    home = plan.frr_dir(peer)
    home.mkdir(parents=True, exist_ok=True)
    # FRR runs as the frr user: it must get through to its directory and read a config of its own.
    for directory in (plan.run_dir, home.parent):
        directory.chmod(directory.stat().st_mode | 0o711)
    config = home / "frr.conf"
    shutil.copyfile(spec.config, config)
    for path in (home, config):
        shutil.chown(path, "frr", "frr")
    pids = []
    for daemon in frr_daemons(spec.config):
        cmd = ["ip", "netns", "exec", plan.netns_of(peer), str(FRR_DIR / daemon), "-f", str(config),
               "-i", str(home / f"{daemon}.pid"), "-z", str(home / "zserv.api"), "--vty_socket", str(home),
               "--log", f"file:{home / (daemon + '.log')}"]
        proc = _spawn(cmd, plan.run_dir / "peers" / f"{peer}.log")
        journal.record("process", peer, pid=proc.pid, marker=str(home), role=daemon)
        pids.append(proc.pid)
        if daemon == "zebra":  # the others connect to its socket at start
            deadline = time.monotonic() + 10
            while not (home / "zserv.api").exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise BuildError(f"peer {peer}: zebra did not start; see {plan.run_dir / 'peers' / peer}.log")
                time.sleep(0.02)
    return pids[0]


def start_exabgp(plan: LabPlan, journal: Journal, peer: str) -> int:
    """Start ExaBGP in the foreground in the peer's netns, as root, without its CLI pipes, on a
    copy of its config in the lab's run directory (which names the process as the lab's)."""
    from .topology import exabgp_command
    spec = plan.topology.peer(peer)
    config = plan.run_dir / "peers" / f"{peer}.exabgp.conf"
    config.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(spec.config, config)
    cmd = ["ip", "netns", "exec", plan.netns_of(peer), "env", "exabgp_daemon_user=root",
           "exabgp_daemon_daemonize=false", "exabgp_api_cli=false", "exabgp_log_destination=stdout",
           exabgp_command() or "exabgp", "server", str(config)]
    proc = _spawn(cmd, plan.run_dir / "peers" / f"{peer}.log")
    journal.record("process", peer, pid=proc.pid, marker=str(config), role="exabgp")
    return proc.pid


def ours(pid: int, marker: str) -> bool:
    """Whether pid is still the process we started: alive, not a zombie, its command line naming
    the lab's own file or socket."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0]
    except (OSError, IndexError):
        return False
    return state != "Z" and any(marker.encode() in arg for arg in cmdline)


def live_processes(journal: Journal, node: str | None = None) -> list[tuple[int, str, str]]:
    """(pid, marker, node) of the journal's processes still running as ours."""
    return [(int(e.data["pid"]), e.data["marker"], e.name) for e in journal.of("process")
            if (node is None or e.name == node) and ours(int(e.data["pid"]), e.data["marker"])]


def router_bird_pid(plan_run_dir: Path, router: str) -> int | None:
    from ..routing.bird import BirdPaths, running_pid
    return running_pid(BirdPaths.under(plan_run_dir / "routers" / router / router))


def stop(processes: list[tuple[int, str, str]], sig: int = signal.SIGTERM, wait: float = STOP_WAIT) -> list[str]:
    """Signal processes by pid; SIGKILL the ones still running after `wait`. Returns problems."""
    problems = []
    for pid, marker, _ in processes:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)  # a test may have frozen it
            os.kill(pid, sig)
    deadline = time.monotonic() + wait
    for pid, marker, node in processes:
        while ours(pid, marker) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.05)
        if ours(pid, marker):
            problems.append(f"{node}: pid {pid} ignored {signal.Signals(sig).name}; killed it")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _reap(pid)
    return problems


def _reap(pid: int) -> None:
    """Collect our own child's exit, so that it does not stay a zombie in this process."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


# --- teardown ----------------------------------------------------------------------------------------

@contextlib.contextmanager
def _run_root(path: str):
    saved = os.environ.get("TAPROUTER_RUN_DIR")
    os.environ["TAPROUTER_RUN_DIR"] = path
    try:
        yield
    finally:
        if saved is None:
            del os.environ["TAPROUTER_RUN_DIR"]
        else:
            os.environ["TAPROUTER_RUN_DIR"] = saved


def teardown(journal: Journal) -> list[str]:
    """Remove, in reverse, what the journal names; returns problems (never raises)."""
    problems: list[str] = []
    entries = journal.entries()
    problems += stop(live_processes(journal))
    for entry in (e for e in entries if e.kind == "router"):
        problems += _router_down(entry.name, Path(entry.data["config"]), entry.data["run_dir"],
                                 entry.data["netns"])
    bridges = [e.name for e in entries if e.kind == "bridge"]
    if bridges:
        args = [a for b in bridges for a in ("--", "--if-exists", "del-br", b)]
        try:
            netdev.vsctl(args)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            problems.append(f"removing bridges: {exc}")
    links = set(_root_links())
    for entry in (e for e in entries if e.kind == "veth"):
        for name in (entry.name, entry.data.get("peer")):
            if name in links:  # deleting either end deletes both
                netdev.sh("ip", "link", "del", name, check=False)
                links = set(_root_links())
    namespaces = set(_netns_list())
    for entry in (e for e in entries if e.kind == "netns"):
        if entry.name in namespaces:
            netdev.sh("ip", "netns", "del", entry.name, check=False)
    prefix = next((e.name for e in entries if e.kind == "lab"), None)
    if prefix is not None:
        left = leftovers(prefix)
        if left:
            problems.append(f"left behind with prefix {prefix!r}: {', '.join(left)}")
    run_dir = next((Path(e.data["run_dir"]) for e in entries if e.kind == "lab"), journal.path.parent)
    # A process whose command line names the lab's own run directory (unique to this lab) was
    # started by it without its pid reaching the journal: a TAP holder that a router's daemon,
    # killed with `up` halfway, spawned as it died. It is said, then ended by that pid.
    stray = stray_processes(run_dir)
    if stray:
        # Most likely a TAP holder still starting (its socket not yet bound) when its router was
        # taken down: once it listens, the router's own `down` asks it to quit.
        time.sleep(1.0)
        for entry in (e for e in entries if e.kind == "router"):
            _router_down(entry.name, Path(entry.data["config"]), entry.data["run_dir"], entry.data["netns"])
        stray = stray_processes(run_dir)
    if stray:
        problems.append("still running after down, killed: " + "; ".join(f"{pid} {cmd}" for pid, cmd in stray))
        stop([(pid, str(run_dir) + "/", "lab") for pid, _ in stray], signal.SIGKILL, wait=5)
    if not problems:
        shutil.rmtree(run_dir, ignore_errors=True)
    return problems


def stray_processes(run_dir: Path) -> list[tuple[int, str]]:
    found = []
    needle = (str(run_dir) + "/").encode()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if any(needle in arg for arg in cmdline.split(b"\0")) and int(pid) != os.getpid():
            found.append((int(pid), cmdline.replace(b"\0", b" ").decode(errors="replace")[:200]))
    return found


def _router_down(router: str, config_path: Path, run_dir: str, netns_name: str) -> list[str]:
    """`taprouter down` of the router's own config: its BIRD, TAP holder, TAPs and netns."""
    from .. import config as config_mod, netns
    from ..down import down
    problems = []
    try:
        with _run_root(run_dir):
            down(next(r for r in config_mod.load(config_path).routers if r.name == router))
    except (OSError, config_mod.ConfigError, StopIteration):
        # No config to read (up died before writing it, or the daemon refused it and so never
        # made anything): the netns is all there can be.
        pass
    if netns.exists(netns_name):
        netns.remove(netns_name)
    if netns.exists(netns_name):
        problems.append(f"router {router}: its netns {netns_name} could not be removed")
    return problems


def _netns_list() -> list[str]:
    out = netdev.sh("ip", "netns", "list", check=False)
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _root_links() -> list[str]:
    out = netdev.sh("ip", "-o", "link", "show", check=False)
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]


def leftovers(prefix: str) -> list[str]:
    """Every netns, bridge and link whose name starts with the prefix."""
    bridges = netdev.sh("ovs-vsctl", "list-br", check=False).split()
    found = [f"netns {n}" for n in _netns_list() if n.startswith(prefix)]
    found += [f"bridge {b}" for b in bridges if b.startswith(prefix)]
    found += [f"link {link}" for link in _root_links() if link.startswith(prefix)]
    return found
