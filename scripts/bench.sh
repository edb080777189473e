#!/usr/bin/env bash
# Benchmarks: builds in release (the bench profile), runs the scenarios
# against the real service, the real PostgreSQL and the simulator, prints a
# markdown report and writes JSON to $CARGO_TARGET_DIR/bench/report.json.
#   scripts/bench.sh                 # every scenario
#   scripts/bench.sh ingest sweep    # some: bulk-backfill, bulk-sweep, ingest, pipeline, paced, backfill, sweep, outage, scrapers
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/prmonitor-target}"
bash scripts/ensure-postgres.sh >/dev/null
command -v pgbench >/dev/null || { echo "pgbench is needed for the ingest baseline (Debian: postgresql-client)" >&2; exit 1; }
command -v psql >/dev/null || { echo "psql is needed for the COPY baseline" >&2; exit 1; }
exec cargo bench --bench prmonitor -- "$@"
