#!/usr/bin/env bash
# Intake's latency beside 16 looping scrapers, before and after the
# operations listener: builds the service at BEFORE (default c733689, the
# last commit with scrapes and probes reading the database on the webhook
# port each time) in a worktree, then runs the `scrapers` benchmark with it.
#   scripts/bench-scrapers.sh            # before = c733689
#   BEFORE=<commit> scripts/bench-scrapers.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/prmonitor-target}"
BEFORE="${BEFORE:-c733689}"
bash scripts/ensure-postgres.sh >/dev/null

worktree="$CARGO_TARGET_DIR/before-$BEFORE/src"
# Its own target: building another version of the same crates in one target
# would rebuild each of them on every switch.
before_target="$CARGO_TARGET_DIR/before-$BEFORE/target"
if [ ! -d "$worktree" ]; then
  git worktree add --detach "$worktree" "$BEFORE" >/dev/null
fi
echo "== building the service at $BEFORE (release)" >&2
CARGO_TARGET_DIR="$before_target" cargo build -q --release --manifest-path "$worktree/Cargo.toml" -p prmonitor --bin prmonitor

export PRMONITOR_BENCH_BEFORE_BIN="$before_target/release/prmonitor"
export PRMONITOR_BENCH_BEFORE_LABEL="before ($BEFORE)"
exec cargo bench --bench prmonitor -- scrapers
