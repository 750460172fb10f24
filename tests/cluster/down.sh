#!/usr/bin/env bash
# Stops exactly the processes tests/cluster/up.sh DIR started (by the pids it recorded in DIR/pids),
# one at a time in reverse order, SIGTERM then SIGKILL after 10 s. Leaves DIR (logs, PKI, etcd data) for inspection.
# With the real node (up.sh NODE=1) it first deletes the pods while the kubelet still runs, and after
# the processes are gone it leaves the machine as it was (node/down.sh).
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: bash tests/cluster/down.sh DIR" >&2; exit 1; }
dir="$1"
[ -f "$dir/pids" ] || [ -f "$dir/node/restore" ] || { echo "down.sh: nothing recorded in $dir/pids" >&2; exit 0; }
touch "$dir/pids"
# A pid counts only while it still runs the program recorded under its name (a pid can be reused): the
# binary, or the script an interpreter runs (node/dns.py).
ours() { [ -r "/proc/$2/cmdline" ] && tr '\0' '\n' 2>/dev/null < "/proc/$2/cmdline" | head -n2 | grep -q "/$1\$"; }
stop_recorded() { # stop_recorded NAME: SIGTERM, then SIGKILL after 10 s, of the process recorded as NAME
  local pid deadline
  pid="$(awk -v n="$1" '$1==n {print $2}' "$dir/pids")"
  [ -n "$pid" ] && ours "$1" "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$(( $(date +%s) + 10 ))
  while ours "$1" "$pid" && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.1; done
  if ours "$1" "$pid"; then echo "down.sh: $1 ($pid) ignored SIGTERM; killing it" >&2; kill -KILL "$pid" 2>/dev/null || true; fi
}
node=0
if [ -f "$dir/node/restore" ]; then
  node=1
  # shellcheck source=node/down.sh
  . "$(dirname "$0")/node/down.sh"
  node_drain
fi
# One at a time, last started first: etcd outlives the apiserver, which removes its endpoint lease on
# the way out.
tac "$dir/pids" | while read -r name pid; do stop_recorded "$name"; done
[ "$node" = 0 ] || node_restore
rm -f "$dir/pids" "$dir/env"
echo "down.sh: stopped the control plane of $dir" >&2
