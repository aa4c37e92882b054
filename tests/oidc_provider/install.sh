#!/usr/bin/env bash
# Installs the test OpenID provider's locked npm packages (oidc-provider, jose) into tests/oidc_provider/node_modules,
# once: `make test` runs it, and the single sign-on tests' fixture does the same when it finds none.
set -euo pipefail
cd "$(dirname "$0")"
if [[ -f node_modules/.package-lock.json ]]; then
  exit 0
fi
command -v npm >/dev/null || { echo "tests/oidc_provider: Node.js 20+ and npm are needed for the single sign-on tests" >&2; exit 1; }
npm ci --no-audit --no-fund --loglevel=error
