"""Fixtures for the netns tests (the lab itself is in routerlab.py): Open vSwitch running, a
running RouterLab, a PostgreSQL cluster, and the daemon's log attached to a failing test's report.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

# Re-exported: helpers written before routerlab.py import these from conftest.
from routerlab import (N_HOSTS, PYTHON, REPO, SOCK_PATH_MAX, TAPROUTER, VENV_BIN, RouterLab,  # noqa: F401
                       bridges, free_tcp_port, host_python, leftovers, netns_list, pid_alive, root_links,
                       run, running_lab, unique_prefix, wait_until)


# --- fixtures -------------------------------------------------------------------------------

@pytest.fixture(scope="session", autouse=True)
def ovs() -> None:
    """Root, and the Open vSwitch daemons running (started idempotently)."""
    if os.geteuid() != 0:
        pytest.fail("netns_tests need root: they create network namespaces, TAPs and OVS bridges",
                    pytrace=False)
    for tool in ("ip", "ovs-vsctl", "ovs-ofctl", "ping", "ethtool"):
        if shutil.which(tool) is None:
            pytest.fail(f"netns_tests need {tool!r} on PATH", pytrace=False)
    if not TAPROUTER.exists():
        pytest.fail(f"{TAPROUTER} is missing; run `make bootstrap` first", pytrace=False)
    result = subprocess.run(["bash", str(REPO / "scripts" / "ovs-start.sh")], capture_output=True,
                            text=True, timeout=60)
    if result.returncode != 0:
        pytest.fail(f"scripts/ovs-start.sh failed ({result.returncode}):\n{result.stdout}{result.stderr}",
                    pytrace=False)


@pytest.fixture(name="wait_until")
def wait_until_fixture():
    return wait_until


@pytest.fixture
def router_lab(request, tmp_path, ovs):
    """A lab (bridge + h1..h3) with a running, reconciled taprouter daemon; removed afterwards."""
    yield from running_lab(request, RouterLab(tmp_path), "router_lab")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the daemon's log (and the switch's flows) to the report of a failing test."""
    report = yield
    lab = getattr(item, "_router_lab", None)
    if lab is not None and report.failed:
        # pyroute2's and asyncio's debug lines drown the daemon's own under -v; the file has them all.
        lines = [line for line in lab.log_text().splitlines()
                 if not re.search(r" DEBUG +(pyroute2|asyncio)", line)]
        report.sections.append((f"taprouter daemon log, without pyroute2 debug ({lab.log_path})",
                                "\n".join(lines)[-40000:]))
        if report.when != "teardown":
            report.sections.append((f"flows on {lab.bridge}", lab.dump_flows()))
    return report


@pytest.fixture(scope="session")
def pg_cluster():
    """One throwaway PostgreSQL cluster for the session (tests/pgcluster.py); each lab makes its
    own database in it."""
    if str(REPO / "tests") not in sys.path:
        sys.path.append(str(REPO / "tests"))  # pgcluster.py, shared with the unit tests
    from pgcluster import Cluster

    cluster = Cluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def policy_lab(request, tmp_path, ovs):
    """A running lab whose policies live in SQLite, or with `request.param` "postgresql" in a
    database of the session's cluster (policylab.both_backends parametrizes it)."""
    from policylab import PolicyLab

    backend = getattr(request, "param", "sqlite")
    cluster = request.getfixturevalue("pg_cluster") if backend == "postgresql" else None
    yield from running_lab(request, PolicyLab(tmp_path, backend, cluster), "policy_lab")
