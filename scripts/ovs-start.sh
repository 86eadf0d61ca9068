#!/usr/bin/env bash
# Start ovsdb-server and ovs-vswitchd (userspace datapath) unless they already run.
# Idempotent, and harmless to an Open vSwitch that is already running.
set -euo pipefail
RUN=/var/run/openvswitch
DB=/etc/openvswitch/conf.db
SCHEMA=/usr/share/openvswitch/vswitch.ovsschema
mkdir -p "$RUN" /etc/openvswitch /var/log/openvswitch

alive() { # alive NAME: true if the daemon's pidfile names a live process
  local pidfile="$RUN/$1.pid"
  [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

if ! alive ovsdb-server; then
  [ -f "$DB" ] || ovsdb-tool create "$DB" "$SCHEMA"
  ovsdb-server "$DB" --remote=punix:"$RUN/db.sock" --pidfile --detach \
    --log-file=/var/log/openvswitch/ovsdb-server.log
  ovs-vsctl --no-wait init
  echo "ovs-start: started ovsdb-server"
fi
if ! alive ovs-vswitchd; then
  ovs-vswitchd unix:"$RUN/db.sock" --pidfile --detach \
    --log-file=/var/log/openvswitch/ovs-vswitchd.log
  echo "ovs-start: started ovs-vswitchd"
fi
ovs-vsctl --timeout=10 show >/dev/null
