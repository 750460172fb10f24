#!/usr/bin/env bash
# Stops exactly the processes tests/cluster/up.sh DIR started (by the pids it recorded in DIR/pids),
# in reverse order, SIGTERM then SIGKILL after 10 s. Leaves DIR (logs, PKI, etcd data) for inspection.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: bash tests/cluster/down.sh DIR" >&2; exit 1; }
dir="$1"
[ -f "$dir/pids" ] || { echo "down.sh: nothing recorded in $dir/pids" >&2; exit 0; }
# A pid counts only while it still runs the binary recorded under its name (a pid can be reused).
ours() { [ -r "/proc/$2/cmdline" ] && tr '\0' '\n' < "/proc/$2/cmdline" | head -n1 | grep -q "/$1\$"; }
tac "$dir/pids" | while read -r name pid; do
  if ours "$name" "$pid"; then kill -TERM "$pid" 2>/dev/null || true; fi
done
deadline=$(( $(date +%s) + 10 ))
tac "$dir/pids" | while read -r name pid; do
  while ours "$name" "$pid" && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.1; done
  if ours "$name" "$pid"; then
    echo "down.sh: $name ($pid) ignored SIGTERM; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
done
rm -f "$dir/pids" "$dir/env"
echo "down.sh: stopped the control plane of $dir" >&2
