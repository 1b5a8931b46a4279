#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
  systemctl stop tokenagent.service >/dev/null 2>&1 || true
  systemctl disable tokenagent.service >/dev/null 2>&1 || true
fi
exit 0
