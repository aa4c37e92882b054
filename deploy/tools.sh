#!/usr/bin/env bash
# Installs the pinned kustomize that tests/deploy renders the overlays with, into .stack/tools/bin
# (`make deploy-tools`, a prerequisite of `make test`; `make up` never needs it).
# kustomize is a Go module: `go install` builds it from the Go module proxy (about a minute, once).
set -euo pipefail
cd "$(dirname "$0")/.."
KUSTOMIZE_VERSION=v5.7.1
BIN_DIR="$PWD/.stack/tools/bin"
if [[ -x "$BIN_DIR/kustomize" ]] && [[ "$("$BIN_DIR/kustomize" version)" == "$KUSTOMIZE_VERSION" ]]; then
  exit 0
fi
GO=$(command -v go || true)
[[ -n "$GO" ]] || { [[ -x /usr/local/go/bin/go ]] && GO=/usr/local/go/bin/go; }
if [[ -z "$GO" ]]; then
  echo "deploy/tools.sh: Go is needed to build kustomize $KUSTOMIZE_VERSION (tests/deploy renders the overlays)" >&2
  exit 1
fi
mkdir -p "$BIN_DIR"
echo "installing kustomize $KUSTOMIZE_VERSION into $BIN_DIR" >&2
GOBIN="$BIN_DIR" GOFLAGS=-buildvcs=false "$GO" install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
