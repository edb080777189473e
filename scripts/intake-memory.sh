#!/usr/bin/env bash
# Benchmark (not a test): the peak memory of `prmonitor serve --no-worker`
# while 16 clients post 25 MiB bodies at once, unsigned and then signed.
# Each phase runs a fresh process, so its peak RSS (VmHWM) is that phase's.
#   scripts/intake-memory.sh                  # the binary of this tree (debug build)
#   scripts/intake-memory.sh path/to/prmonitor [label]   # another build, e.g. an older commit's
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/prmonitor-target}"
bash scripts/ensure-postgres.sh >/dev/null
binary="${1:-}"
label="${2:-this tree}"
if [ -z "$binary" ]; then
  cargo build -q --bin prmonitor
  binary="$CARGO_TARGET_DIR/debug/prmonitor"
fi
clients=16
secret=bench-memory-secret
work=$(mktemp -d)
db="prmonitor_bench_memory_$$"
port=$((20000 + $$ % 20000))
cleanup() {
  [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null || true
  psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# A JSON body just under GitHub's 25 MiB cap, and its signature.
python3 - "$work/body.json" "$secret" > "$work/signature" <<'EOF'
import hashlib, hmac, sys
size = 25 * 1024 * 1024 - 64
head = b'{"action":"opened","number":1,"pull_request":{"number":1},"repository":{"id":5,"full_name":"o/r"},"padding":"'
body = head + b"a" * (size - len(head) - 2) + b'"}'
open(sys.argv[1], "wb").write(body)
print("sha256=" + hmac.new(sys.argv[2].encode(), body, hashlib.sha256).hexdigest())
EOF

kib() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }

phase() {
  local name=$1 signature=$2
  DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db" PRMONITOR_LISTEN="127.0.0.1:$port" \
    PRMONITOR_WEBHOOK_SECRETS="$secret" PRMONITOR_HTTP_WORKERS=2 RUST_LOG=warn \
    "$binary" serve --no-worker 2>"$work/serve.log" &
  pid=$!
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    sleep 0.2
  done
  local start_kib statuses
  start_kib=$(kib "$pid" VmRSS)
  : > "$work/statuses"
  for i in $(seq "$clients"); do
    local headers=(-H "X-GitHub-Event: pull_request" -H "X-GitHub-Delivery: 00000000-0000-0000-0000-$(printf '%012d' "$i")$$")
    [ -n "$signature" ] && headers+=(-H "X-Hub-Signature-256: $signature")
    curl -s -o /dev/null -w '%{http_code}\n' --max-time 60 "${headers[@]}" \
      --data-binary "@$work/body.json" "http://127.0.0.1:$port/webhooks/github" >> "$work/statuses" &
  done
  wait $(jobs -p | grep -v "^$pid$") 2>/dev/null || true
  sleep 1
  statuses=$(sort "$work/statuses" | uniq -c | awk '{printf "%s×%s ", $1, $2}')
  printf '| %s | %s | %s | %d | %d | %d | %s|\n' "$label" "$name" "$clients" "$((start_kib / 1024))" \
    "$(( $(kib "$pid" VmHWM) / 1024 ))" "$(( $(kib "$pid" VmRSS) / 1024 ))" "$statuses"
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
  psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
}

echo "| build | posts | clients | RSS before (MiB) | peak RSS (MiB) | RSS after (MiB) | answers |"
echo "|---|---|---|---|---|---|---|"
phase "unsigned 25 MiB" ""
phase "signed 25 MiB" "$(cat "$work/signature")"
