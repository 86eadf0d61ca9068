"""`make test` collects tests/ and netns_tests/ in one pytest run without packages, so two test
modules with one basename stop collection before a single test runs. Unit runs alone never see it."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_no_test_module_name_is_used_twice():
    seen: dict[str, Path] = {}
    clashes = []
    for folder in ("tests", "netns_tests", "benchmarks"):
        for path in sorted((ROOT / folder).glob("test_*.py")):
            if path.name in seen:
                clashes.append(f"{seen[path.name].relative_to(ROOT)} and {path.relative_to(ROOT)}")
            seen.setdefault(path.name, path)
    assert not clashes, "same test module name twice: " + "; ".join(clashes)


def test_netns_helpers_are_not_imported_from_conftest():
    """Both tests/ and netns_tests/ have a conftest.py on sys.path; `from conftest import` gets
    whichever came first on the command line. The shared netns helpers live in routerlab.py."""
    offenders = [str(path.relative_to(ROOT)) for path in sorted((ROOT / "netns_tests").glob("*.py"))
                 if any(line.startswith("from conftest import") for line in path.read_text().splitlines())]
    assert not offenders, "import from routerlab, not conftest: " + ", ".join(offenders)
