#!/usr/bin/env bash
# Builds the .deb, checks its contents, installs it on this machine, and
# checks the installed configuration and unit. Run by .ci/run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
fail() { echo "FAIL: $*" >&2; exit 1; }

VERSION=0.0.0~ci packaging/build.sh
deb=$(ls dist/tokenagent_*.deb | head -1)
[ -n "$deb" ] || fail "no .deb built"
ls dist/tokenagent-*.rpm >/dev/null || fail "no .rpm built"

contents=$(dpkg-deb --contents "$deb")
echo "$contents"
for path in ./usr/bin/tokenagentd ./usr/bin/tokenagent ./lib/systemd/system/tokenagent.service ./lib/systemd/system/tokenagent.socket ./etc/tokenagent/agent.toml \
            ./usr/share/doc/tokenagent/agent.toml.example ./usr/lib/sysusers.d/tokenagent.conf; do
  grep -q " $path\$" <<<"$contents" || fail "$deb lacks $path"
done

dpkg -i "$deb"
getent passwd tokenagent >/dev/null || fail "postinstall did not create the tokenagent user"
[ "$(stat -c %a /etc/tokenagent/store.key)" = 600 ] || fail "store key is not mode 0600"
# The packaged configuration has no profiles yet: check-config says what to
# add (as start would), and passes once a profile is there.
if out=$(tokenagentd check-config /etc/tokenagent/agent.toml 2>&1); then
  fail "check-config passed a configuration without profiles: $out"
fi
grep -q "no profiles" <<<"$out" || fail "check-config of the packaged config: $out"
withprofile=$(mktemp -d)/agent.toml # a copy: the installed conffile stays as shipped
cp /etc/tokenagent/agent.toml "$withprofile"
printf '\n[profiles.ci]\ntoken_url = "https://idp.example/token"\nclient_id = "ci"\nclient_secret = "env:HOME"\n' >>"$withprofile"
# check-config as root judges files as the package's user, who must be
# able to read the copy as it can read /etc/tokenagent/agent.toml.
chmod 0755 "$(dirname "$withprofile")"
chgrp tokenagent "$withprofile" && chmod 0640 "$withprofile"
out=$(tokenagentd check-config "$withprofile")
echo "$out"
grep -q "ok, 1 profile(s): ci" <<<"$out" || fail "check-config with a profile: $out"
systemd-analyze verify /lib/systemd/system/tokenagent.service /lib/systemd/system/tokenagent.socket || fail "systemd-analyze verify"
tokenagentd version | grep -q "0.0.0~ci" || fail "installed daemon has the wrong version"
tokenagent version | grep -q "0.0.0~ci" || fail "installed CLI has the wrong version"
echo "PASS: .deb builds, installs, and its config and unit check out"
