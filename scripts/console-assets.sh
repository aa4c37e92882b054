#!/usr/bin/env bash
# The console's front-end libraries, from the npm registry at set-up time (nothing from a CDN at run time):
# `npm ci` from services/console/web/package-lock.json, then the build copies what ships into the Python
# package's static/vendor. Skipped when the lock has not changed since the last build.
#
#   scripts/console-assets.sh [--browser]     --browser: also Debian's chromium for the browser tests
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WEB="$ROOT/services/console/web"
VENDOR="$ROOT/services/console/src/spendstream/console/static/vendor"
STAMP="$WEB/node_modules/.spendstream-built"

log() { printf '[console] %s\n' "$*" >&2; }
if [[ $EUID -eq 0 ]]; then SUDO=(); else SUDO=(sudo); fi

apt_install() {
  "${SUDO[@]}" apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq "$@" >/dev/null
}

if ! command -v npm >/dev/null; then
  log "installing Debian's nodejs and npm"
  apt_install nodejs npm
fi

lock_sum="$(sha256sum "$WEB/package-lock.json" "$WEB/build.mjs" | sha256sum | cut -d' ' -f1)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$lock_sum" && -f "$VENDOR/chart.umd.js" ]]; then
  :
else
  log "npm ci (services/console/web) and the console's asset build"
  (cd "$WEB" && npm ci --no-audit --no-fund --loglevel=error >/dev/null && npm run --silent build >/dev/null)
  echo "$lock_sum" >"$STAMP"
fi

if [[ "${1:-}" == "--browser" ]] && [[ ! -x /usr/bin/chromium ]]; then
  log "installing Debian's chromium for the browser tests"
  apt_install chromium fonts-dejavu-core
fi
