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
