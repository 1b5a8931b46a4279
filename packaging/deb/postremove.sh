#!/bin/sh
# On remove, the configuration, the store key and the token store are kept:
# a reinstall must find the old store readable. On purge, everything the
# package or its scripts made goes: the store key, the token store, the
# runtime directory and any enablement link left behind. The tokenagent
# user and group stay (Debian does not reuse a removed system user's ids
# safely); files you added to /etc/tokenagent (env, secrets) are yours to
# remove, and keep /etc/tokenagent until you do.
set -e
if [ "$1" = purge ]; then
  rm -f /etc/tokenagent/store.key
  rm -rf /var/lib/tokenagent /run/tokenagent
  rm -f /etc/systemd/system/multi-user.target.wants/tokenagent.service \
        /etc/systemd/system/sockets.target.wants/tokenagent.socket
  rmdir /etc/tokenagent 2>/dev/null || true
fi
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload || true
fi
exit 0
