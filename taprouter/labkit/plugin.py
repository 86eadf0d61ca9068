"""The pytest plugin (entry point `pytest11`): the `taprouter_lab` fixture.

    def test_ecmp(taprouter_lab):
        lab = taprouter_lab("triangle.yaml")   # relative to the test file; built and converged
        assert lab.ping("h1", "h2").loss == 0

Each lab gets a prefix and a run directory of its own, and is torn down after the test, also
when it fails; the teardown fails the test if anything with the lab's prefix is left.
"""

from __future__ import annotations

from pathlib import Path

import pytest

LABS_ATTR = "_taprouter_labs"


@pytest.fixture
def taprouter_lab(request):
    """A function: taprouter_lab(TOPOLOGY_FILE, timeout=None) builds the lab, waits until it has
    converged, and returns it (taprouter.labkit.running.RunningLab)."""
    from .running import RunningLab

    labs: list = []
    setattr(request.node, LABS_ATTR, labs)

    def start(path: str | Path, timeout: float | None = None):
        path = Path(path)
        if not path.is_absolute():
            path = Path(request.path).parent / path
        lab = RunningLab.fresh(path, wait=False)
        labs.append(lab)
        lab.wait_converged(timeout)
        return lab

    yield start
    problems = []
    for lab in reversed(labs):
        problems += lab.down()
    if problems:
        pytest.fail("taprouter_lab teardown: " + "; ".join(problems), pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing test's report carries what each lab's daemons said and what has not converged."""
    report = yield
    labs = getattr(item, LABS_ATTR, None)
    if labs and report.failed and report.when == "call":
        for lab in labs:
            try:
                pending = lab.pending()
            except Exception as exc:  # noqa: BLE001 - a report must not fail
                pending = [f"(could not ask: {exc})"]
            report.sections.append((f"lab {lab.plan.topology.name}: not converged",
                                    "\n".join(pending) or "(everything converged)"))
            for node in [r.name for r in lab.plan.topology.routers] + [p.name for p in lab.plan.topology.peers]:
                report.sections.append((f"lab {lab.plan.topology.name}: {node}'s log", lab.log(node)[-4000:]))
    return report
