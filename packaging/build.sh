#!/usr/bin/env bash
# Builds dist/tokenagentd (the daemon), dist/tokenagent (the CLI) and the
# .deb and .rpm packages that ship both into dist/.
# nfpm runs as a Go tool at a pinned version (newer releases need modules
# outside the Go module proxy).
set -euo pipefail
cd "$(dirname "$0")/.."
NFPM_VERSION=v2.44.0
export VERSION="${VERSION:-0.0.0~dev}"
export ARCH="${ARCH:-$(go env GOARCH)}"
mkdir -p dist
for cmd in tokenagentd tokenagent; do
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/tokenagent/tokenagent/ipc.version=${VERSION}" -o "dist/$cmd" "./cmd/$cmd"
done
# go install pkg@version builds outside this module: go.mod and go.sum stay as they are.
GOBIN="$PWD/dist/tools" GOFLAGS= go install "github.com/goreleaser/nfpm/v2/cmd/nfpm@${NFPM_VERSION}"
for packager in deb rpm; do
  dist/tools/nfpm package --config packaging/nfpm.yaml --packager "$packager" --target dist/
done
ls -l dist/
