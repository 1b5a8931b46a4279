#!/bin/sh
# Before removal (not before an upgrade: an upgrade keeps the service as
# the administrator left it): stop the service and its sockets, and remove
# their enablement links while the unit files still say which they are.
# deb: "remove"; rpm: 0 (the last version is being erased).
set -e
case "$1" in
remove|0)
  if [ -d /run/systemd/system ]; then
    systemctl stop tokenagent.service tokenagent.socket >/dev/null 2>&1 || true
  fi
  # Works without a running systemd too (it edits the links only).
  if command -v systemctl >/dev/null 2>&1; then
    systemctl --no-reload disable tokenagent.service tokenagent.socket >/dev/null 2>&1 || true
  fi
  ;;
esac
exit 0
