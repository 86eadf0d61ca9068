#!/usr/bin/env bash
# Install what taprouter needs on Debian 12: system packages, the Open vSwitch
# daemons (started), and .venv/ with taprouter installed. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pair in ovs-vswitchd:openvswitch-switch bird:bird2 ip:iproute2 ping:iputils-ping \
            iperf3:iperf3 ethtool:ethtool tcpdump:tcpdump traceroute:traceroute openssl:openssl \
            chromium:chromium chromedriver:chromium-driver \
            vtysh:frr; do  # FRR: peers in `taprouter lab` (netns_tests/test_lab_frr.py)
  cmd=${pair%%:*} pkg=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || need+=("$pkg")
done
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
# The policy tests start a throwaway PostgreSQL cluster; Debian keeps initdb and pg_ctl off PATH.
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || command -v initdb >/dev/null 2>&1 \
  || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { echo "bootstrap: need root to install ${need[*]}" >&2; exit 1; }
  echo "bootstrap: installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

bash scripts/ovs-start.sh

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.taprouter-installed
if [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -e '.[test]'
  touch "$stamp"
fi
echo "bootstrap: ready (.venv/bin/taprouter)"
