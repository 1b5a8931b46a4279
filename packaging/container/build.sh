#!/usr/bin/env bash
# Builds the tokenagent image with podman, from packaging/container/Containerfile:
# static tokenagentd and tokenagent built here (CGO_ENABLED=0, -trimpath),
# the host's CA bundle, a non-root user 65532. No registry is needed
# (FROM scratch); pushing is the operator's:
#   podman push localhost/tokenagent:0.1.0 registry.example.com/tokenagent:0.1.0
# or, for a node's containerd without a registry:
#   podman save localhost/tokenagent:0.1.0 | ctr -n k8s.io images import -
#
#   VERSION=0.1.0 packaging/container/build.sh   → localhost/tokenagent:$VERSION
# IMAGE overrides the name (default localhost/tokenagent). The manifests in
# packaging/kubernetes run the default name and version (checked by
# packaging's TestKubernetesReferencesExist).
set -euo pipefail
cd "$(dirname "$0")/../.."
VERSION="${VERSION:-0.1.0}"
IMAGE="${IMAGE:-localhost/tokenagent}"
ARCH="${ARCH:-$(go env GOARCH)}"
CA_BUNDLE="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
export PATH="$PATH:/usr/local/go/bin"

if ! command -v podman >/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman
  else
    echo "build.sh: podman is not installed: apt-get install podman (as root), then run this again" >&2
    exit 1
  fi
fi
if [ ! -s "$CA_BUNDLE" ]; then
  echo "build.sh: no CA bundle at $CA_BUNDLE: apt-get install ca-certificates, or set CA_BUNDLE" >&2
  exit 1
fi

ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
for cmd in tokenagentd tokenagent; do
  CGO_ENABLED=0 GOOS=linux GOARCH="$ARCH" go build -trimpath \
    -ldflags "-s -w -X github.com/tokenagent/tokenagent/ipc.version=${VERSION}" -o "$ctx/$cmd" "./cmd/$cmd"
done
mkdir -p "$ctx/rootfs/etc/ssl/certs" "$ctx/rootfs/etc/tokenagent" "$ctx/rootfs/tmp" "$ctx/rootfs/run" "$ctx/rootfs/var/lib" \
  "$ctx/agentdirs/run/tokenagent" "$ctx/agentdirs/var/lib/tokenagent"
chmod 0755 "$ctx/rootfs" "$ctx/rootfs/etc" "$ctx/rootfs/etc/ssl" "$ctx/rootfs/etc/ssl/certs" "$ctx/rootfs/etc/tokenagent" \
  "$ctx/rootfs/run" "$ctx/rootfs/var" "$ctx/rootfs/var/lib"
chmod 1777 "$ctx/rootfs/tmp"
chmod 0755 "$ctx/agentdirs" "$ctx/agentdirs/run" "$ctx/agentdirs/var" "$ctx/agentdirs/var/lib"
chmod 0750 "$ctx/agentdirs/run/tokenagent" "$ctx/agentdirs/var/lib/tokenagent"
install -m 0644 "$CA_BUNDLE" "$ctx/rootfs/etc/ssl/certs/ca-certificates.crt"
# Go's os/user reads these (a static binary has no NSS): the agent's user
# has a name in logs and in `tokenagentd check-config`.
printf 'root:x:0:0:root:/root:/sbin/nologin\ntokenagent:x:65532:65532:tokenagent:/var/lib/tokenagent:/sbin/nologin\n' >"$ctx/rootfs/etc/passwd"
printf 'root:x:0:\ntokenagent:x:65532:\n' >"$ctx/rootfs/etc/group"
chmod 0644 "$ctx/rootfs/etc/passwd" "$ctx/rootfs/etc/group"
cp packaging/container/Containerfile "$ctx/Containerfile"

podman build --quiet --arch "$ARCH" --build-arg "VERSION=$VERSION" -t "$IMAGE:$VERSION" -f "$ctx/Containerfile" "$ctx"
echo "built $IMAGE:$VERSION"
