#!/usr/bin/env bash
# Checks the running service against the OpenAPI document it generates
# (GET /api/v1/openapi.json) with schemathesis: no server error, no status,
# content type, header or body the document does not describe.
#
# The service is `prmonitor demo` (the simulator's GitHub, the whole service,
# scripted activity, then a trickle of changes) on a database of its own,
# created here and dropped on exit. Needs PostgreSQL on 127.0.0.1:5432 with
# trust auth for postgres (scripts/ensure-postgres.sh) and python3 with pip.
#
#   scripts/schemathesis.sh                  # the default budget, a few minutes
#   SCHEMATHESIS_EXAMPLES=200 scripts/schemathesis.sh
#   SCHEMATHESIS_SEED=1234 scripts/schemathesis.sh   # replay a run (its seed is printed)
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
# Test cases per operation and phase: enough to reach every status a route
# answers, few enough that the run takes minutes on two cores.
EXAMPLES="${SCHEMATHESIS_EXAMPLES:-100}"
CHECKS=not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,unsupported_method
READ_TOKEN=schemathesis-read-token
ADMIN_TOKEN=schemathesis-admin-token

# A virtual environment of its own, beside the build (kept between runs like
# the target directory): the pinned version, and no clash with the system's
# Python packages (Debian refuses pip installs into its own, PEP 668).
venv="${CARGO_TARGET_DIR:-target}/schemathesis-$SCHEMATHESIS_VERSION"
schemathesis="$venv/bin/schemathesis"
if [ ! -x "$schemathesis" ]; then
  echo "== pip install schemathesis==$SCHEMATHESIS_VERSION (into $venv)"
  if python3 -m venv "$venv" 2>/dev/null; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
  else
    # No venv module (Debian without python3-venv): the interpreter's own site.
    rm -rf "$venv"
    PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --quiet --disable-pip-version-check \
      "schemathesis==$SCHEMATHESIS_VERSION"
    schemathesis="$(command -v schemathesis)"
  fi
fi
"$schemathesis" --version

echo "== cargo build --bin prmonitor"
cargo build -q --bin prmonitor
binary="${CARGO_TARGET_DIR:-target}/debug/prmonitor"

database="prmonitor_schemathesis_$$"
log="$(mktemp -t prmonitor-schemathesis.XXXXXX)"
config="$(mktemp -t schemathesis-config.XXXXXX)"
config_under_repository="$(mktemp -t schemathesis-config.XXXXXX)"
demo=""
cleanup() {
  status=$?
  if [ -n "$demo" ] && kill -0 "$demo" 2>/dev/null; then
    kill -TERM "$demo" 2>/dev/null || true
    for _ in $(seq 1 20); do
      kill -0 "$demo" 2>/dev/null || break
      sleep 0.5
    done
    kill -KILL "$demo" 2>/dev/null || true
    wait "$demo" 2>/dev/null || true
  fi
  psql -h 127.0.0.1 -U postgres -q -c "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null 2>&1 || true
  if [ "$status" -ne 0 ]; then
    echo "-- the service's output (demo lines and logs):" >&2
    tail -n 60 "$log" >&2 || true
  fi
  rm -f "$log" "$config" "$config_under_repository"
  exit "$status"
}
trap cleanup EXIT

echo "== prmonitor demo on database $database"
# The demo creates the database named by DATABASE_URL and applies the
# migrations; port 0 picks a free port, printed on its "prmonitor" line.
DATABASE_URL="postgres://postgres@127.0.0.1:5432/$database" \
  PRMONITOR_LISTEN=127.0.0.1:0 \
  PRMONITOR_ADMIN_TOKEN="$ADMIN_TOKEN" \
  PRMONITOR_READ_TOKEN="$READ_TOKEN" \
  RUST_LOG="${RUST_LOG:-error}" \
  "$binary" demo >"$log" 2>&1 &
demo=$!

address=""
for _ in $(seq 1 240); do
  if ! kill -0 "$demo" 2>/dev/null; then
    echo "prmonitor demo ended before serving" >&2
    exit 1
  fi
  # The demo prints "Still serving" once its scripted activity has settled.
  if grep -q "Still serving" "$log"; then
    address="$(sed -n 's#^  prmonitor *http://\([^ ]*\).*#\1#p' "$log" | head -n 1)"
    break
  fi
  sleep 0.5
done
if [ -z "$address" ]; then
  echo "prmonitor demo did not get to serving within 120 s" >&2
  exit 1
fi
base="http://$address"
echo "serving on $base"

seed=()
if [ -n "${SCHEMATHESIS_SEED:-}" ]; then
  seed=(--seed "$SCHEMATHESIS_SEED")
fi

# GET /api/v1/events never ends a response while the service runs: a change
# feed stream follows the changes live. schemathesis reads Server-Sent
# Events and checks each against the document; it is bounded here to a few
# events and a few seconds a request (a stream with nothing new sends only a
# keep-alive comment every 15 s, and ends at the timeout), so it is checked
# like the other routes without holding the run.
#
# POST /webhooks/github mostly answers 401: schemathesis cannot sign a body
# with the webhook secret. That 401, the 400s of missing headers and the
# answers' shapes are what it checks there (tests/api/webhook_intake.rs
# covers signed deliveries).
cat >"$config" <<EOF
[generation]
max-examples = $EXAMPLES

[[operations]]
include-path = "/api/v1/events"
max-stream-events = 5
request-timeout = 2.0
generation = { max-examples = $((EXAMPLES / 4 + 1)) }
EOF

run() {
  local config_file="$1"
  shift
  "$schemathesis" --no-color --config-file "$config_file" run "$base/api/v1/openapi.json" \
    --checks "$CHECKS" \
    --workers 1 \
    --request-timeout 10 \
    --generation-database none \
    --suppress-health-check too_slow,filter_too_much \
    "${seed[@]}" \
    "$@"
}
# One worker: hypothesis's lambda descriptions are not thread-safe on
# Python 3.11 ("AST constructor recursion depth mismatch" runtime errors).

echo "== schemathesis with the admin token: every route but the change feed (next run)"
run "$config" -H "Authorization: Bearer $ADMIN_TOKEN" --exclude-path /api/v1/events

echo "== schemathesis with the read token: the read and admin APIs (admin answers 401), the change feed"
run "$config" -H "Authorization: Bearer $READ_TOKEN" --include-path-regex '^/api/v1/(repositories|reconcile|jobs|events)'

# Generated owners and names are never watched repositories: the routes
# under one answer 404 above. Here they are one the demo watches, so the
# answers with data (pull requests, checks, merge groups) are checked too.
repository="$(BASE="$base" TOKEN="$READ_TOKEN" python3 -c '
import json, os, urllib.request
request = urllib.request.Request(os.environ["BASE"] + "/api/v1/repositories",
                                 headers={"Authorization": "Bearer " + os.environ["TOKEN"]})
print(json.load(urllib.request.urlopen(request))["items"][0]["full_name"])
')"
printf '[generation]\nmax-examples = %s\n\n[parameters]\n"path.owner" = "%s"\n"path.name" = "%s"\n' \
  "$EXAMPLES" "${repository%%/*}" "${repository#*/}" >"$config_under_repository"
echo "== schemathesis with the read token under $repository"
run "$config_under_repository" -H "Authorization: Bearer $READ_TOKEN" \
  --include-path-regex '^/api/v1/repositories/\{owner\}/\{name\}/'
echo "== schemathesis: no failures"
