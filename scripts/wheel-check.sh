#!/bin/bash
# Builds taprouter's wheel and installs it into a fresh venv outside the repository, as an operator
# would with pip, then runs `taprouter --version` and `taprouter check` from that venv.
# Usage: scripts/wheel-check.sh [WORKDIR]   (a temporary directory by default; removed at the end)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$(mktemp -d /tmp/taprouter-wheel.XXXXXX)}
cleanup() { [ -n "${1:-}" ] || rm -rf "$work"; }
trap "cleanup ${1:-}" EXIT
python=${PYTHON:-python3}

"$python" -m venv "$work/build-venv"
"$work/build-venv/bin/pip" -q install build
"$work/build-venv/bin/python" -m build -q --wheel --outdir "$work/dist" "$repo" >/dev/null
wheel=$(ls "$work"/dist/taprouter-*.whl)
echo "built $(basename "$wheel")"

"$python" -m venv "$work/venv"
(cd "$work" && "$work/venv/bin/pip" -q install "$wheel")
cat > "$work/taprouter.yaml" <<'YAML'
routers:
  r1:
    dpid: 1
    ports:
      1: {tap: r1-p1, addresses: [10.0.1.1/24, "2001:db8:1::1/64"]}
YAML
cd "$work"  # outside the repository: nothing may come from its working tree
"$work/venv/bin/taprouter" --version
TAPROUTER_CONFIG="$work/taprouter.yaml" "$work/venv/bin/taprouter" check
"$work/venv/bin/python" - <<'PY'
import importlib.metadata as md, pathlib, taprouter
assert "site-packages" in taprouter.__file__, taprouter.__file__
meta = md.metadata("taprouter")
assert meta["License"] == "Apache-2.0", meta["License"]
assert not meta.get_all("Project-URL") and not meta.get("Home-page"), "an address was invented for the project"
import sys
readme = pathlib.Path(sys.prefix) / "share" / "doc" / "taprouter" / "README.md"
assert readme.is_file() and "taprouter" in readme.read_text(), f"{readme} is not installed"
files = [str(f) for f in md.files("taprouter")]
assert any(f.endswith("LICENSE") for f in files), "LICENSE is not in the wheel"
assert any("db/migrations/0001_initial.py" in f for f in files), "the migrations are not in the wheel"
print("wheel metadata OK:", meta["Version"], "from", pathlib.Path(taprouter.__file__).parent)
PY
