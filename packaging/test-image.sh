#!/usr/bin/env bash
# Builds the container image (packaging/container/build.sh), exports its
# file system and runs it under systemd-nspawn as the shipped Kubernetes
# manifests run it: the DaemonSet's agent as root serving `tokenagent token`
# to uid 1000, the sidecar's agent as the image's user serving an OAuth
# client of uid 1000 on 127.0.0.1, and the manifests' probe commands
# (TestContainerImage in packaging/image_test.go). Each step prints PASS or
# FAIL and its time. Needs root; installs podman and systemd-container.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
need=()
command -v podman >/dev/null || need+=(podman)
command -v systemd-nspawn >/dev/null || need+=(systemd-container)
command -v curl >/dev/null || need+=(curl)
[ -s /etc/ssl/certs/ca-certificates.crt ] || need+=(ca-certificates)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
TOKENAGENT_IMAGE_TEST=1 go test -count=1 -v -run '^TestContainerImage$' ./packaging/ 2>&1 |
  grep -E '^(=== RUN|--- |ok|FAIL|PASS|panic)|_test.go:'
