"""The layering, checked on the import graph (docs/design.md draws it).

- The base modules (prefix, mac, netns, paths, gctune, config) import no other part of taprouter.
- The OpenFlow model (controller/openflow) imports nothing above it: only the base's values.
- The planner (controller/planner) imports the model, the kernel's typed state and the base's
  values, and nothing that does I/O: no sockets, processes, files, threads, clocks or os-ken.
- The session (controller/session) does not reach up into the wiring (core, router).
- routing/ and bridge/ never import controller/.
- Django is imported only by the database app (db/), the policy store and the web UI (web/): nothing else touches the tables,
  and the policy model, checks and documents stay plain values the planner may use.
- control/ (the control socket and the metrics) never imports the daemon's parts: it sees the daemon as a
  DaemonView. On the daemon's side, controller/view.py alone joins the two: no other controller module
  imports the control socket, the policy source or the policy views, and none reaches the store or db/.
- policy/ never imports the daemon's parts (controller/, routing/, bridge/): the source hands policies
  to a router through its PolicyRouter protocol, and reads the store it is given, importing neither.
- controller/lookup.py works on values (the planner's books, the kernel's state): nothing of the
  wiring, the session, the planner's code or the control room.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import taprouter

ROOT = Path(taprouter.__file__).parent
BASE = {"taprouter.prefix", "taprouter.mac", "taprouter.netns", "taprouter.paths", "taprouter.gctune", "taprouter.dpid",
        "taprouter.config", "taprouter.configyaml", "taprouter.configaddr", "taprouter.configvlan", "taprouter.dburl"}
DATABASE = {"taprouter.policy.store"}  # besides taprouter.db
VALUES = {"taprouter.prefix", "taprouter.mac"}
POLICY_VALUES = {"taprouter.policy", "taprouter.policy.model", "taprouter.policy.ranges"}  # pure: see below
IO_MODULES = {"socket", "subprocess", "os", "select", "threading", "ssl", "time", "io", "shutil", "fcntl",
              "signal", "asyncio", "os_ken", "pyroute2", "pytun", "pybird"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module a file imports, relative imports resolved, `from X import y` as X and X.y."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


FILES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}
MODULES = {name: _imports(path) for name, path in FILES.items()}


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _taprouter_imports(module: str) -> set[str]:
    return {m for m in MODULES[module] if m in MODULES and m != module}


def test_every_module_is_seen():
    assert "taprouter.controller.planner.reconcile" in MODULES and len(MODULES) > 50


@pytest.mark.parametrize("module", sorted(BASE))
def test_the_base_imports_no_other_part(module):
    assert _taprouter_imports(module) - {"taprouter"} <= BASE


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _in(m, "taprouter.controller.openflow")))
def test_the_openflow_model_imports_nothing_above_it(module):
    allowed = VALUES | {"taprouter", "taprouter.controller"}
    outside = {m for m in _taprouter_imports(module) if not _in(m, "taprouter.controller.openflow")}
    assert outside <= allowed, f"{module} imports {sorted(outside - allowed)}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _in(m, "taprouter.controller.planner")))
def test_the_planner_does_no_io(module):
    imports = MODULES[module]
    io = {m for m in imports if m.split(".")[0] in IO_MODULES}
    assert not io, f"{module} imports {sorted(io)}"
    allowed = VALUES | {"taprouter", "taprouter.controller", "taprouter.gctune", "taprouter.routing",
                        "taprouter.routing.model"} | POLICY_VALUES
    outside = {m for m in _taprouter_imports(module)
               if not _in(m, "taprouter.controller.planner") and not _in(m, "taprouter.controller.openflow")}
    assert outside <= allowed, f"{module} imports {sorted(outside - allowed)}"
    tree = ast.parse(FILES[module].read_text())
    calls = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert not calls & {"open", "print", "input", "exec", "eval"}, f"{module} calls {sorted(calls)}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _in(m, "taprouter.controller.session")))
def test_the_session_does_not_reach_into_the_wiring(module):
    wiring = {"taprouter.controller.core", "taprouter.controller.router"}
    assert not MODULES[module] & wiring


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _in(m, "taprouter.routing") or _in(m, "taprouter.bridge")))
def test_routing_and_bridge_never_import_the_controller(module):
    assert not {m for m in MODULES[module] if _in(m, "taprouter.controller")}


@pytest.mark.parametrize("module", sorted(POLICY_VALUES))
def test_the_policy_model_is_pure(module):
    """The planner reads policies as values: their model does no I/O and imports nothing above it."""
    assert not {m for m in MODULES[module] if m.split(".")[0] in IO_MODULES}
    assert _taprouter_imports(module) <= POLICY_VALUES | {"taprouter"}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_only_the_store_and_the_db_app_use_django(module):
    if _in(module, "taprouter.db") or _in(module, "taprouter.web") or module in DATABASE:
        return
    django = {m for m in MODULES[module] if m.split(".")[0] == "django" or _in(m, "taprouter.db")}
    assert not django, f"{module} imports {sorted(django)}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _in(m, "taprouter.control")))
def test_the_control_room_asks_the_daemon_only_through_its_view(module):
    """The control socket and the metrics know the daemon as a DaemonView and a MetricsSnapshot:
    nothing of the wiring, the session, the planner, the kernel mirror or the relay."""
    reached = _daemon_internals(MODULES[module])
    assert not reached, f"{module} imports {sorted(reached)}"


def _daemon_internals(imports: set[str]) -> set[str]:
    return {m for m in imports if any(_in(m, f"taprouter.{part}") for part in ("controller", "routing", "bridge"))}


# The control room's side of the daemon: what only controller/view.py may import.
CONTROL_ROOM = {"taprouter.control.server", "taprouter.control.scrape", "taprouter.control.client",
                "taprouter.policy.source", "taprouter.policy.views", "taprouter.policy.commands"}
STORE = {"taprouter.policy.store", "taprouter.db"}


def _reaches(imports: set[str], packages: set[str]) -> set[str]:
    return {m for m in imports if any(_in(m, p) for p in packages)}


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _in(m, "taprouter.controller")))
def test_only_the_view_joins_the_daemon_to_the_control_room(module):
    reached = _reaches(MODULES[module], STORE)
    if module != "taprouter.controller.view":
        reached |= _reaches(MODULES[module], CONTROL_ROOM)
    assert not reached, f"{module} imports {sorted(reached)}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _in(m, "taprouter.policy")))
def test_policies_never_import_the_daemon(module):
    reached = _daemon_internals(MODULES[module])
    assert not reached, f"{module} imports {sorted(reached)}"


def test_the_policy_source_knows_only_the_policy_model():
    assert _taprouter_imports("taprouter.policy.source") <= POLICY_VALUES


def test_the_lookup_works_on_values():
    """It reads the planner's books (pure values, test_the_planner_does_no_io) and the kernel's typed state."""
    allowed = VALUES | {"taprouter", "taprouter.routing.model"}
    outside = {m for m in _taprouter_imports("taprouter.controller.lookup")
               if not _in(m, "taprouter.controller.openflow") and not _in(m, "taprouter.controller.planner")}
    assert outside <= allowed, f"lookup imports {sorted(outside - allowed)}"


def test_the_route_list_works_on_values():
    """It pages the mirror's packed prefixes: no I/O, nothing of the daemon's."""
    imports = _taprouter_imports("taprouter.controller.routelist")
    assert imports <= VALUES | {"taprouter"}, f"routelist imports {sorted(imports - VALUES)}"
    assert not {m for m in MODULES["taprouter.controller.routelist"] if m.split(".")[0] in IO_MODULES}


def test_the_checks_see_a_violation():
    """The checks read the graph they are meant to: a planner module importing a socket, the model
    importing the planner, or routing importing the controller, would be caught."""
    planner = MODULES["taprouter.controller.planner.fibstate"]
    assert {m for m in planner | {"socket"} if m.split(".")[0] in IO_MODULES} == {"socket"}
    model = MODULES["taprouter.controller.openflow.wire"] | {"taprouter.controller.planner.fib"}
    assert {m for m in model if m in MODULES and not _in(m, "taprouter.controller.openflow")} - VALUES - {
        "taprouter", "taprouter.controller"} == {"taprouter.controller.planner.fib"}
    assert "taprouter.routing.model" in MODULES["taprouter.controller.planner.reconcile"]
    server = MODULES["taprouter.control.server"]
    assert _daemon_internals(server | {"taprouter.controller.core"}) == {"taprouter.controller.core"}
    router = MODULES["taprouter.controller.router"] | {"taprouter.policy.store", "taprouter.policy.source"}
    assert _reaches(router, STORE | CONTROL_ROOM) == {"taprouter.policy.store", "taprouter.policy.source"}
    assert "taprouter.policy.source" in MODULES["taprouter.controller.view"]
    assert _daemon_internals(MODULES["taprouter.policy.source"] | {"taprouter.controller.router"})
