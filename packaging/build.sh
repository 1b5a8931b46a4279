#!/usr/bin/env bash
# Builds dist/tokenagent and the .deb and .rpm packages into dist/.
# nfpm runs as a Go tool at a pinned version (newer releases need modules
# outside the Go module proxy).
set -euo pipefail
cd "$(dirname "$0")/.."
NFPM_VERSION=v2.44.0
export VERSION="${VERSION:-0.0.0~dev}"
export ARCH="${ARCH:-$(go env GOARCH)}"
mkdir -p dist
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o dist/tokenagent ./cmd/tokenagent
for packager in deb rpm; do
  GOFLAGS=-mod=mod go run "github.com/goreleaser/nfpm/v2/cmd/nfpm@${NFPM_VERSION}" \
    package --config packaging/nfpm.yaml --packager "$packager" --target dist/
done
ls -l dist/
