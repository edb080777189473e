#!/usr/bin/env bash
# Chaos soak (not part of `cargo test` or CI): two `prmonitor serve` and one
# `prmonitor worker` on a PostgreSQL cluster of their own, against the GitHub
# simulator with 30 % API errors, secondary rate limits, webhooks lost (10 %),
# duplicated (20 %) and reordered; a process SIGKILLed every 20–40 s, one
# PostgreSQL fast restart and one immediate stop and start. Then faults off,
# one reconcile, the queue drained, and a report; exit 1 when an invariant
# fails (benches/chaos.rs says which).
#   scripts/chaos.sh [MINUTES]      # default 10
# Environment: CHAOS_PGPORT (default 5439; never 5432), CHAOS_RATE (changes/s,
# default 3), CHAOS_SEED, CHAOS_DRAIN_SECS (default 300), CARGO_TARGET_DIR;
# CHAOS_KEEP_CLUSTER=1 leaves the cluster running afterwards for a post-mortem.
# Logs and report.md go to $CARGO_TARGET_DIR/chaos/.
set -euo pipefail
cd "$(dirname "$0")/.."

minutes="${1:-10}"
port="${CHAOS_PGPORT:-5439}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/prmonitor-target}"

if [ "$port" = 5432 ]; then
  echo "chaos.sh restarts its PostgreSQL: it never runs on port 5432" >&2
  exit 2
fi
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$pgbin" ] || [ ! -x "$pgbin/initdb" ]; then
  echo "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (Debian: postgresql)" >&2
  exit 2
fi
if "$pgbin/pg_isready" -q -h 127.0.0.1 -p "$port" 2>/dev/null; then
  echo "something already answers on 127.0.0.1:$port; set CHAOS_PGPORT to a free port" >&2
  exit 2
fi

# initdb and pg_ctl refuse to run as root.
as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# The build first, so the cluster does not wait for it. The dev profile keeps
# overflow checks and debug assertions, which is what a chaos run wants. The
# program is then run directly (not through cargo), so a signal reaches it.
exe=$(nice -n 10 cargo bench --bench chaos --profile dev --no-run --message-format=json-render-diagnostics \
  | grep -o '"executable":"[^"]*/chaos-[^"]*"' | tail -n 1 | cut -d'"' -f4)
if [ -z "$exe" ] || [ ! -x "$exe" ]; then
  echo "the chaos program did not build" >&2
  exit 2
fi

work=$(mktemp -d /var/tmp/prmonitor-chaos-pg.XXXXXX)
chmod 755 "$work"
if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$work"; fi
data="$work/data"
pglog="$work/postgres.log"
logdir="$CARGO_TARGET_DIR/chaos"
mkdir -p "$logdir"

bench=""
cleanup() {
  status=$?
  trap - EXIT INT TERM
  # The program kills its children when it stops; if it is still there, ask
  # it to, then kill whatever it started that is left (by pid, checked).
  if [ -n "$bench" ] && kill -0 "$bench" 2>/dev/null; then
    kill -TERM "$bench" 2>/dev/null || true
    for _ in $(seq 1 20); do kill -0 "$bench" 2>/dev/null || break; sleep 0.5; done
  fi
  if [ -f "$logdir/pids" ]; then
    while read -r pid; do
      if [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$CARGO_TARGET_DIR/debug/prmonitor" ]; then
        kill -KILL "$pid" 2>/dev/null || true
      fi
    done <"$logdir/pids"
  fi
  if [ "${CHAOS_KEEP_CLUSTER:-}" = 1 ] && [ -f "$data/postmaster.pid" ]; then
    echo "chaos: the cluster is kept for a look: psql -h 127.0.0.1 -p $port -U postgres prmonitor_chaos" >&2
    echo "chaos: stop and remove it with: runuser -u postgres -- $pgbin/pg_ctl -D $data -m fast stop && rm -rf $work" >&2
    exit "$status"
  fi
  if [ -f "$data/postmaster.pid" ]; then
    as_postgres "$pgbin/pg_ctl" -D "$data" -m fast -w -t 30 stop >/dev/null 2>&1 \
      || as_postgres "$pgbin/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  [ -f "$pglog" ] && cp "$pglog" "$logdir/postgres.txt"
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

as_postgres "$pgbin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --no-instructions >/dev/null
cat >>"$data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$work'
max_connections = 100
shared_buffers = 64MB
EOF
# Trust on 127.0.0.1 only (initdb's --auth=trust covers local and host lines).
as_postgres nice -n 10 "$pgbin/pg_ctl" -D "$data" -l "$pglog" -w -t 60 start >/dev/null
echo "chaos: PostgreSQL $(basename "$(dirname "$pgbin")") on 127.0.0.1:$port, data in $data"

CHAOS_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres" \
CHAOS_PG_CTL="$pgbin/pg_ctl" CHAOS_PGDATA="$data" CHAOS_PG_LOG="$pglog" CHAOS_LOG_DIR="$logdir" \
  nice -n 10 "$exe" "$minutes" &
bench=$!
set +e
wait "$bench"
status=$?
set -e
bench=""
exit "$status"
