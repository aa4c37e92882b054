#!/usr/bin/env bash
# `make up`: run spendstream in monolithic mode on the local stack, create a demo workspace, print how to use it.
# Stays in the foreground with the server; Ctrl-C stops it (Kafka and Redis keep running: `make stop`).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# The checkout's own data directory (KEK and chDB) for the server and the commands below alike.
export SPENDSTREAM_DATA_DIR="${SPENDSTREAM_DATA_DIR:-$ROOT/.data}"
PORT="${SPENDSTREAM_HTTP_PORT:-8080}"
LOG="$ROOT/.stack/spendstream.log"
mkdir -p "$ROOT/.stack"

if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
  echo "something already listens on 127.0.0.1:$PORT; stop it or set SPENDSTREAM_HTTP_PORT" >&2; exit 1
fi
uv run --frozen spendstream topics create >/dev/null
uv run --frozen spendstream up >"$LOG" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null' EXIT INT TERM
for _ in $(seq 1 300); do
  if curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null; then break; fi
  kill -0 $SERVER 2>/dev/null || { echo "spendstream up exited; see $LOG" >&2; tail -n 20 "$LOG" >&2; exit 1; }
  sleep 0.2
done
curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null || { echo "spendstream did not become ready; see $LOG" >&2; exit 1; }

WS_JSON="$(uv run --frozen spendstream workspace create demo)"
read -r WS INGEST READ ADMIN < <(python3 -c 'import json,sys; d=json.load(sys.stdin); k=d["keys"]; print(d["workspace_id"], k["ingest"], k["read"], k["admin"])' <<<"$WS_JSON")
# The demo workspace's owner: a one-time sign-in link (mailed instead when SPENDSTREAM_SMTP_HOST is set).
OWNER_EMAIL="${SPENDSTREAM_DEMO_OWNER:-owner@example.com}"
OWNER_JSON="$(SPENDSTREAM_HTTP_PORT="$PORT" uv run --frozen spendstream member add "$WS" "$OWNER_EMAIL" --role owner --name "Demo owner")"
SIGNIN="$(python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("signin_link") or "(sent by e-mail)")' <<<"$OWNER_JSON")"
cat <<MSG

spendstream is running on http://127.0.0.1:$PORT (log: $LOG)
the console: http://127.0.0.1:$PORT/ (the owner's sign-in link below opens it signed in)
demo workspace: $WS
  ingest key: $INGEST
  read key:   $READ
  admin key:  $ADMIN
(keys are shown once; only their SHA-256 hashes are stored)
owner $OWNER_EMAIL signs in once with:
  $SIGNIN
(then sets a password: POST /v1/me/password; invitations: POST /v1/invitations)

Send an event:
  curl -s -H 'Authorization: Bearer $INGEST' -H 'Content-Type: application/json' \\
    http://127.0.0.1:$PORT/v1/events -d '{"events":[{"provider":"openai","model":"gpt-4o-mini","input_tokens":1200,"output_tokens":300,"latency_ms":850,"timestamp":"'\$(date -u +%Y-%m-%dT%H:%M:%SZ)'","tags":{"feature":"chat"}}]}'

Read the totals:
  curl -s -H 'Authorization: Bearer $READ' 'http://127.0.0.1:$PORT/v1/usage?group_by=model,feature'

Ctrl-C stops spendstream.
MSG
wait $SERVER
