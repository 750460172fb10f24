#!/usr/bin/env bash
# scripts/advisories.sh against planted databases (CI runs this beside it; needs cargo-deny and git):
# an advisory against the h2 of Cargo.lock must fail the check and be named; one against a crate the
# project does not use must pass. This shows the script reads the database it is given.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
h2="$(awk '/^name = "h2"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)"
[ -n "$h2" ] || { echo "planted-advisory.sh: no h2 in Cargo.lock; plant on another crate" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

plant() { # plant DIR CRATE ID: a database with one advisory, nothing patched before 99
  mkdir -p "$1/crates/$2"
  cat >"$1/crates/$2/$3.md" <<ADVISORY
\`\`\`toml
[advisory]
id = "$3"
package = "$2"
date = "2026-01-01"
url = "https://example.invalid/$3"
categories = ["denial-of-service"]
keywords = ["planted"]

[versions]
patched = [">= 99.0.0"]
\`\`\`

# A planted advisory

Planted by tests/deny/planted-advisory.sh.
ADVISORY
  git -C "$1" init -q -b main
  git -C "$1" add -A
  git -C "$1" -c user.name=test -c user.email=test@example.invalid commit -qm planted
}

plant "$work/used" h2 RUSTSEC-2026-9001
status=0
out="$(bash scripts/advisories.sh "$work/used" 2>&1)" || status=$?
if [ "$status" -ne 1 ] || ! grep -q "RUSTSEC-2026-9001" <<<"$out"; then
  printf '%s\n' "$out" >&2
  echo "planted-advisory.sh: an advisory against h2 $h2 was not reported (exit $status)" >&2
  exit 1
fi

plant "$work/unused" not-a-dependency-of-ours RUSTSEC-2026-9002
out="$(bash scripts/advisories.sh "$work/unused" 2>&1)" || {
  printf '%s\n' "$out" >&2
  echo "planted-advisory.sh: an advisory against a crate we do not use failed the check" >&2
  exit 1
}
echo "planted-advisory.sh: ok (h2 $h2 flagged, an unused crate's advisory ignored)"
