#!/bin/sh
# After install or upgrade: the service user, directories, and a store key.
set -e
if command -v systemd-sysusers >/dev/null 2>&1; then
  systemd-sysusers /usr/lib/sysusers.d/tokenagent.conf
elif ! getent passwd tokenagent >/dev/null; then
  useradd --system --home-dir /var/lib/tokenagent --shell /usr/sbin/nologin --user-group tokenagent
fi
if command -v systemd-tmpfiles >/dev/null 2>&1; then
  systemd-tmpfiles --create /usr/lib/tmpfiles.d/tokenagent.conf || true
else
  install -d -m 0700 -o tokenagent -g tokenagent /var/lib/tokenagent
fi
# The store key: 32 random bytes, base64, readable by root only; systemd
# passes it to the service (LoadCredential=store-key:...).
if [ ! -e /etc/tokenagent/store.key ]; then
  (umask 077; head -c 32 /dev/urandom | base64 > /etc/tokenagent/store.key)
fi
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload || true
  # An upgrade (deb: configure OLD-VERSION; rpm: 2) restarts a running
  # service on the new binary; its stored tokens survive the restart.
  case "$1:${2:-}" in
  configure:?*|2:*) systemctl try-restart tokenagent.service || true ;;
  esac
fi
exit 0
