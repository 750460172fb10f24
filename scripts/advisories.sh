#!/usr/bin/env bash
# `cargo deny check advisories` against the RustSec database (github.com/rustsec/advisory-db).
#   scripts/advisories.sh            fetch the database from GitHub; exit 3 when GitHub is unreachable
#   scripts/advisories.sh CLONE      use a git clone of the database already on this machine, offline
# Exit 0: no advisory matches Cargo.lock. Exit 1: one does (cargo-deny prints it). Exit 2: bad usage.
# CI calls this and reports exit 3 as "not checked"; scripts/release.sh refuses anything but 0.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
[ $# -le 1 ] || { echo "usage: scripts/advisories.sh [CLONE]" >&2; exit 2; }

if [ $# -eq 0 ]; then
  if ! out="$(cargo deny --locked fetch db 2>&1)"; then
    printf '%s\n' "$out" >&2
    echo "advisories.sh: the RustSec database could not be fetched; advisories NOT checked" >&2
    exit 3
  fi
  exec cargo deny --locked check --hide-inclusion-graph advisories
fi

clone="$1"
commit="$(git -C "$clone" rev-parse --verify HEAD 2>/dev/null)" \
  || { echo "advisories.sh: $clone is not a git clone" >&2; exit 2; }
git -C "$clone" cat-file -e "$commit:crates" 2>/dev/null \
  || { echo "advisories.sh: $clone has no crates/ folder: not the RustSec advisory database" >&2; exit 2; }
echo "RustSec database at $commit, committed $(git -C "$clone" show -s --format=%cI "$commit")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# cargo-deny (0.20, as .ci/run installs) keeps the default database in <db-path>/advisory-db-<hash of its
# URL>; a copy there is what it would have fetched. With --offline it reads the copy and fetches nothing.
git clone --quiet --no-checkout "$clone" "$work/db/advisory-db-3157b0e258782691"
git -C "$work/db/advisory-db-3157b0e258782691" checkout --quiet --detach "$commit"
{ cat deny.toml; printf '\n[advisories]\ndb-path = "%s"\n' "$work/db"; } >"$work/deny.toml"
cargo deny --locked --offline --config "$work/deny.toml" check --hide-inclusion-graph advisories
