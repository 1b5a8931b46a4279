#!/usr/bin/env bash
# Proves the .deb under a real systemd: boots Debian bookworm (systemd as
# PID 1) in systemd-nspawn, installs dist/tokenagent_*.deb there and runs
# every command docs/service.md gives, against a test IdP on the host's
# 127.0.0.1 (the container shares the host's network). Prints PASS or
# FAIL per step; exits 1 if any failed.
#
# Run as root, after packaging/test-deb.sh (or packaging/build.sh) built
# the .deb. Installs debootstrap and systemd-container if missing. The
# bookworm tree is built once into $TOKENAGENT_CI_CACHE (default
# /var/cache/tokenagent-ci) and copied for each run, so runs never change it.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$SECONDS
CACHE=${TOKENAGENT_CI_CACHE:-/var/cache/tokenagent-ci}
TREE=$CACHE/bookworm

failed=()
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; failed+=("$*"); }
die() { echo "FAIL: $*"; echo "test-systemd: stopped at a step the rest depends on" >&2; exit 1; }
check() { # check "what" command...: PASS or FAIL by the command's status
  local what=$1; shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}

[ "$(id -u)" -eq 0 ] || die "run as root (systemd-nspawn, nsenter)"
deb=$(ls dist/tokenagent_*.deb 2>/dev/null | head -1)
[ -n "$deb" ] || die "no dist/tokenagent_*.deb; run packaging/build.sh first"

need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v systemd-nspawn >/dev/null || need+=(systemd-container)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# The Debian mirror this machine installs from (deb.debian.org otherwise).
mirror=$(grep -rhoE 'https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null | head -1 | tr -d ' ' || true)
mirror=${mirror:-http://deb.debian.org/debian}

# A tree is complete once it has systemd; it is built aside and renamed, so
# an interrupted build is never taken for a complete one.
if [ ! -x "$TREE/lib/systemd/systemd" ]; then
  echo "building $TREE from $mirror (once per machine)"
  mkdir -p "$CACHE"
  rm -rf "$TREE.partial"
  s=$SECONDS
  debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus bookworm "$TREE.partial" "$mirror" >"$CACHE/debootstrap.log" 2>&1 ||
    { tail -20 "$CACHE/debootstrap.log"; die "debootstrap bookworm from $mirror (log: $CACHE/debootstrap.log)"; }
  rm -rf "$TREE"
  mv "$TREE.partial" "$TREE"
  echo "debootstrap: $((SECONDS - s)) s"
fi

work=$(mktemp -d /var/tmp/tokenagent-systemd.XXXXXX)
root=$work/root
nspawn=
idp=
cleanup() {
  set +e
  [ -n "$nspawn" ] && kill "$nspawn" 2>/dev/null && wait "$nspawn" 2>/dev/null
  [ -n "$idp" ] && kill "$idp" 2>/dev/null && wait "$idp" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

s=$SECONDS
cp -a --reflink=auto "$TREE" "$root"
echo "copied the tree: $((SECONDS - s)) s"

# The test IdP on the host's loopback: two clients, and a count of each
# one's token requests.
go build -o "$work/countidp" ./packaging/testdata/countidp
alpha_secret=alpha-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
beta_secret=beta-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
gamma_secret=gamma-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
coproc IDP { exec "$work/countidp" "alpha=$alpha_secret" "beta=$beta_secret" "gamma=$gamma_secret"; }
idp=$IDP_PID
read -r token_url count_url <&"${IDP[0]}" || die "the test IdP did not start"
requests() { curl -fsS "$count_url?client=$1"; }

# Boot. The container's PID 1 is nspawn's child whose pid in its own
# namespace is 1.
s=$SECONDS
systemd-nspawn --boot -D "$root" --register=no --keep-unit --console=pipe -M tokenagent-ci </dev/null >"$work/console.log" 2>&1 &
nspawn=$!
pid1=
for _ in $(seq 100); do
  for p in $(pgrep -P "$nspawn"); do
    if grep -qE '^NSpid:\s+[0-9]+\s+1$' "/proc/$p/status" 2>/dev/null; then pid1=$p; fi
  done
  [ -n "$pid1" ] && break
  kill -0 "$nspawn" 2>/dev/null || break
  sleep 0.1
done
[ -n "$pid1" ] || { cat "$work/console.log"; die "systemd-nspawn --boot: no container PID 1"; }
# ct runs a command in the container, with a clean environment; one that
# hangs fails after $limit seconds (60; 15 for a client's request).
ct() { nsenter -t "$pid1" -a -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 timeout "${limit:-60}" "$@"; }
# systemctl needs systemd's private socket, made early in the boot.
for _ in $(seq 100); do
  ct test -S /run/systemd/private && break
  sleep 0.1
done
state=$(ct timeout 90 systemctl is-system-running --wait || true)
case "$state" in
running|degraded) pass "boot: systemd $(ct systemctl --version | head -1 | cut -d' ' -f2) is $state after $((SECONDS - s)) s" ;;
*) ct systemctl --failed --no-pager || true; die "boot: system state '$state'" ;;
esac
[ "$state" = running ] || ct systemctl --failed --no-pager --plain || true

# 1. Install: dpkg -i.
mkdir -p "$root/var/tmp/ci" && cp "$deb" "$root/var/tmp/ci/"
if ct dpkg -i "/var/tmp/ci/$(basename "$deb")" >"$work/dpkg.log" 2>&1 && ct getent passwd tokenagent >/dev/null; then
  pass "dpkg -i $(basename "$deb"): installed, user tokenagent made"
else
  cat "$work/dpkg.log"; die "dpkg -i"
fi
files_before=$(ct dpkg -L tokenagent)

# 2. A profile whose secret is a systemd credential (LoadCredential= in a
# drop-in, from a root-only file), another's in the EnvironmentFile, and
# a user in group tokenagent who may use them.
ct sh -ec "
  install -d -m 0700 /etc/tokenagent/credentials
  (umask 077; printf %s '$alpha_secret' >/etc/tokenagent/credentials/alpha-secret)
  mkdir -p /etc/systemd/system/tokenagent.service.d
  printf '[Service]\nLoadCredential=alpha-secret:/etc/tokenagent/credentials/alpha-secret\n' \
    >/etc/systemd/system/tokenagent.service.d/credentials.conf
  (umask 077; echo 'BETA_SECRET=$beta_secret' >/etc/tokenagent/env)
  cat >>/etc/tokenagent/agent.toml <<EOF

[profiles.alpha]
token_url = \"$token_url\"
client_id = \"alpha\"
client_secret = \"systemd-credential:alpha-secret\"
allow_groups = [\"tokenagent\"]
EOF
  useradd --create-home --groups tokenagent alice
  systemctl daemon-reload
"
# check-config finds the credential where systemd would put it: the
# credential files are named as the credentials.
check "check-config of the configured agent.toml" \
  ct env CREDENTIALS_DIRECTORY=/etc/tokenagent/credentials tokenagentd check-config /etc/tokenagent/agent.toml
as_alice() { limit=15 ct runuser -u alice -- "$@"; }

# 3. start: returns once the socket serves (Type=notify, READY=1 after
# listening), so the very next request is answered.
if ct systemctl enable --now tokenagent.service 2>"$work/start.log"; then
  state=$(ct systemctl is-active tokenagent.service || true)
  if alpha1=$(as_alice tokenagent token alpha 2>"$work/token.log") && [ -n "$alpha1" ] && [ "$state" = active ]; then
    pass "systemctl enable --now tokenagent: active, and alice (group tokenagent) got alpha's token at once (credential secret)"
  else
    fail "start: state '$state', tokenagent token alpha: $(cat "$work/token.log")"
  fi
else
  cat "$work/start.log"; ct journalctl -u tokenagent --no-pager | tail -20
  die "systemctl start tokenagent"
fi
check "the agent took its socket from tokenagent.socket (socket activation)" \
  sh -c "nsenter -t $pid1 -a journalctl -u tokenagent --no-pager | grep -q 'took a socket from systemd'"
n_alpha=$(requests alpha)
check "one IdP request for alpha so far (got $n_alpha)" test "$n_alpha" = 1

# 4. reload: a profile added (its secret from the EnvironmentFile) while
# alpha keeps its token and asks the IdP nothing.
ct sh -ec "cat >>/etc/tokenagent/agent.toml <<EOF

[profiles.beta]
token_url = \"$token_url\"
client_id = \"beta\"
client_secret = \"env:BETA_SECRET\"
allow_groups = [\"tokenagent\"]
EOF"
main_before=$(ct systemctl show -p MainPID --value tokenagent)
check "systemctl reload tokenagent" ct systemctl reload tokenagent
# The reload job ends when SIGHUP is sent; the new profile appears when the
# agent has re-read its configuration.
beta=
deadline=$((SECONDS + 10))
while [ $SECONDS -lt $deadline ]; do
  beta=$(as_alice tokenagent token beta 2>/dev/null) && break
  sleep 0.1
done
check "after reload, beta's token (env: secret from EnvironmentFile)" test -n "$beta"
alpha2=$(as_alice tokenagent token alpha 2>/dev/null || true)
check "after reload, alpha's token unchanged, same process, no IdP request (requests: $(requests alpha))" \
  test "$alpha2" = "$alpha1" -a "$(requests alpha)" = 1 -a "$(ct systemctl show -p MainPID --value tokenagent)" = "$main_before"

# 5. restart: the stored token is served, the IdP is not asked.
check "systemctl restart tokenagent" ct systemctl restart tokenagent
alpha3=$(as_alice tokenagent token alpha 2>/dev/null || true)
check "after restart, alpha's stored token served, no IdP request (requests: $(requests alpha), beta: $(requests beta))" \
  test -n "$alpha3" -a "$alpha3" = "$alpha1" -a "$(requests alpha)" = 1 -a "$(requests beta)" = 1

# 6. status and journal.
check "systemctl status tokenagent" sh -c "nsenter -t $pid1 -a systemctl status tokenagent --no-pager >/dev/null"
check "tokenagent status (root): every profile serves" ct tokenagent status
check "journalctl -u tokenagent has 'agent started'" \
  sh -c "nsenter -t $pid1 -a journalctl -u tokenagent --no-pager | grep -q 'agent started'"
check "no secret or token in the journal" \
  sh -c "! nsenter -t $pid1 -a journalctl --no-pager | grep -qF -e '$alpha_secret' -e '$beta_secret' -e '${alpha1:-$alpha_secret}'"

# 7. The unit's hardening as systemd rates it.
exposure=$(ct systemd-analyze security tokenagent.service --no-pager | sed -n 's/.*Overall exposure level for tokenagent.service: \([0-9.]*\).*/\1/p')
check "systemd-analyze security tokenagent.service: ${exposure:-?} (at most 2.0)" \
  awk -v e="${exposure:-99}" 'BEGIN { exit !(e <= 2.0) }'

# 8. kill -9 of the main process: systemd starts it again (Restart=on-failure).
old=$(ct systemctl show -p MainPID --value tokenagent)
restarts=$(ct systemctl show -p NRestarts --value tokenagent)
# (Never kill -9 0: that is the caller's whole process group, this script too.)
[ "$old" -gt 0 ] && ct sh -c "kill -9 $old"
s=$SECONDS
new=
deadline=$((SECONDS + 30))
while [ $SECONDS -lt $deadline ]; do
  new=$(ct systemctl show -p MainPID --value tokenagent)
  if [ "$new" != 0 ] && [ "$new" != "$old" ] && [ "$(ct systemctl is-active tokenagent)" = active ]; then break; fi
  new=
  sleep 0.1
done
if [ -n "$new" ] && [ "$(ct systemctl show -p NRestarts --value tokenagent)" -gt "$restarts" ] &&
   [ "$(as_alice tokenagent token alpha 2>/dev/null)" = "$alpha1" ]; then
  pass "kill -9 of MainPID $old: active again as $new after $((SECONDS - s)) s (RestartSec=$(ct systemctl show -p RestartUSec --value tokenagent)), serving the stored token"
else
  fail "kill -9 of MainPID $old: not active again ($(ct systemctl is-active tokenagent || true))"
fi

# 9. Socket activation: with the service stopped, tokenagent.socket holds
# the socket, and a client's connection starts the service.
ct systemctl stop tokenagent.service
sock_state=$(ct systemctl is-active tokenagent.socket || true)
svc_state=$(ct systemctl is-active tokenagent.service || true)
if [ "$sock_state" = active ] && [ "$svc_state" != active ] &&
   alpha4=$(as_alice tokenagent token alpha 2>"$work/token.log") && [ "$alpha4" = "$alpha1" ] &&
   [ "$(ct systemctl is-active tokenagent.service)" = active ]; then
  pass "socket activation: service stopped, socket $sock_state; alice's request started it and got the stored token"
else
  fail "socket activation: socket '$sock_state', service '$svc_state', token: $(cat "$work/token.log")"
fi
check "no IdP request through all of it (alpha $(requests alpha), beta $(requests beta))" \
  test "$(requests alpha)" = 1 -a "$(requests beta)" = 1

# 10. Without socket activation (tokenagent.socket masked, as when `service
# install` writes the service alone): the agent binds the socket itself
# and gives it its group.
ct systemctl stop tokenagent.service tokenagent.socket
ct systemctl mask --quiet tokenagent.socket
if ct systemctl start tokenagent.service 2>"$work/start.log" &&
   [ "$(as_alice tokenagent token alpha 2>/dev/null)" = "$alpha1" ] &&
   [ "$(ct stat -c %G:%a /run/tokenagent/agent.sock)" = tokenagent:660 ]; then
  pass "without tokenagent.socket: the agent made its socket (group tokenagent, 0660) and serves"
else
  fail "without tokenagent.socket: $(cat "$work/start.log") $(ct journalctl -u tokenagent --no-pager | grep -m1 tokenagentd: )"
fi
ct systemctl unmask --quiet tokenagent.socket

# 10b. Selectors (docs/selectors.md): callers of one uid told apart by
# the unit they run in, by their executable's path and digest, and by
# what they ran when they connected. exe and sha256 need the agent to
# read other users' executables: CAP_SYS_PTRACE, granted by a drop-in.
ct sh -ec "
  install -m 0755 /usr/bin/tokenagent /usr/local/bin/ta-client
  echo 'GAMMA_SECRET=$gamma_secret' >>/etc/tokenagent/env
  for p in joba client perl; do cat >>/etc/tokenagent/agent.toml <<EOF

[profiles.\$p]
token_url = \"$token_url\"
client_id = \"gamma\"
client_secret = \"env:GAMMA_SECRET\"
scopes = [\"\$p\"]
EOF
  done
  cat >>/etc/tokenagent/agent.toml <<EOF

[[profiles.joba.allow]]
unit = \"job-a.service\"

[[profiles.client.allow]]
exe = \"/usr/local/bin/ta-client\"
sha256 = \"\$(sha256sum /usr/local/bin/ta-client | cut -d' ' -f1)\"

[[profiles.perl.allow]]
user = \"alice\"
exe = \"/usr/bin/perl\"
EOF
  systemctl daemon-reload
"
check "check-config with the selector profiles" \
  ct env CREDENTIALS_DIRECTORY=/etc/tokenagent/credentials BETA_SECRET=x GAMMA_SECRET=x tokenagentd check-config /etc/tokenagent/agent.toml
journal_has() { nsenter -t "$pid1" -a journalctl -u tokenagent --no-pager | grep -- "$1" >/dev/null; }
# First as packaged, with no capability: unit selectors work; exe and
# sha256 cannot for other users' callers, and the agent says so.
check "systemctl restart tokenagent (no capabilities)" ct systemctl restart tokenagent
check "the journal warns that exe/sha256 selectors need CAP_SYS_PTRACE (profiles client, perl)" \
  journal_has '"profiles":\["client","perl"\].*exe and sha256 selectors: this agent has no CAP_SYS_PTRACE'
job() { # job UNIT PROFILE: tokenagent token PROFILE as alice in a transient unit
  limit=30 ct systemd-run --quiet --wait --pipe --collect --unit="$1" --uid=alice /usr/bin/tokenagent token "$2"
}
if joba=$(job job-a joba 2>"$work/job.log") && [ -n "$joba" ]; then
  pass "systemd-run --unit=job-a as alice: joba's token (allow unit = job-a.service; the agent has no capability)"
else
  fail "job-a: $(cat "$work/job.log")"
  ct journalctl -u tokenagent --no-pager | tail -15
fi
if job job-b joba >"$work/job.log" 2>&1; then
  fail "job-b (same uid, another unit) got joba's token"
else
  pass "systemd-run --unit=job-b as alice: refused ($(head -c 120 "$work/job.log"))"
fi
check "the journal names the selector that refused job-b" \
  journal_has 'allow\[0\]: unit .*job-b.service.* is not .*job-a.service'
# Then with CAP_SYS_PTRACE, from a drop-in: exe and sha256.
ct sh -ec "
  printf '[Service]\nAmbientCapabilities=CAP_SYS_PTRACE\nCapabilityBoundingSet=CAP_SYS_PTRACE\n' \
    >/etc/systemd/system/tokenagent.service.d/selectors.conf
  systemctl daemon-reload
"
check "systemctl restart tokenagent with CAP_SYS_PTRACE (drop-in)" ct systemctl restart tokenagent
check "the agent has CAP_SYS_PTRACE (bit 19) in its effective set" \
  ct sh -c 'caps=$(sed -n "s/^CapEff:\t//p" /proc/$(systemctl show -p MainPID --value tokenagent)/status); [ $(( 0x$caps >> 19 & 1 )) = 1 ]'

check "the allowed executable at its path, with its digest, gets client's token" \
  as_alice /usr/local/bin/ta-client token client
ct install -o alice -m 0755 /usr/bin/tokenagent /home/alice/ta-copy
if as_alice /home/alice/ta-copy token client >"$work/exe.log" 2>&1; then
  fail "a copy of the allowed executable at another path got client's token"
else
  pass "a copy at another path (same digest) is refused"
fi
ct sh -c 'cat /usr/bin/tokenagent >/var/tmp/ta-other && echo >>/var/tmp/ta-other && install -m 0755 /var/tmp/ta-other /usr/local/bin/ta-client'
if as_alice /usr/local/bin/ta-client token client >"$work/exe.log" 2>&1; then
  fail "another executable (another digest) at the allowed path got client's token"
else
  pass "another digest at the allowed path is refused"
fi
# (Denials are logged once per caller, profile and reason a minute, then
# counted: the two refusals of alice for client have a line each.)
check "the journal names the selector that refused the copy" \
  journal_has 'allow\[0\]: exe .*/home/alice/ta-copy.* is not .*/usr/local/bin/ta-client'
check "the journal names the digest that refused the other executable" \
  journal_has 'allow\[0\]: sha256 of .*/usr/local/bin/ta-client.* is [0-9a-f]*, not'
# perl asks on its own connection; then perl connects, asks /v1/health
# (so the agent has accepted and pinned it), and execs sh, which asks
# for the token on the inherited connection.
cat >"$root/var/tmp/ask.pl" <<'PERL'
use strict; use IO::Socket::UNIX; use Fcntl; use POSIX ();
my $s = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Peer => "/run/tokenagent/agent.sock") or die "connect: $!";
sub ask {
  print $s "GET $_[0] HTTP/1.1\r\nHost: tokenagent\r\n\r\n";
  my $status = <$s>; my $len = 0;
  while (my $l = <$s>) { last if $l eq "\r\n"; $len = $1 if $l =~ /^Content-Length:\s*(\d+)/i }
  read($s, my $body, $len);
  return $status;
}
if ($ARGV[0] eq "ask") { print ask("/v1/tokens/perl"); exit 0 }
ask("/v1/health");
fcntl($s, F_SETFD, 0) or die; POSIX::dup2(fileno($s), 3) or die;
exec "/bin/sh", "-c", 'printf "GET /v1/tokens/perl HTTP/1.1\r\nHost: tokenagent\r\nConnection: close\r\n\r\n" >&3; head -n 1 <&3';
PERL
chmod 0644 "$root/var/tmp/ask.pl"
perl_direct=$(as_alice perl /var/tmp/ask.pl ask 2>&1 | tr -d '\r' || true)
check "perl (allow exe = /usr/bin/perl) asking on its own connection: $perl_direct" \
  sh -c "printf '%s' '$perl_direct' | grep -q '^HTTP/1.1 200'"
perl_exec=$(as_alice perl /var/tmp/ask.pl exec 2>&1 | tr -d '\r' || true)
check "perl that connected, then exec'd sh, which asked: $perl_exec" \
  sh -c "printf '%s' '$perl_exec' | grep -q '^HTTP/1.1 404'"
check "the journal says the process runs another program than when it connected" \
  journal_has 'runs another program'
check "tokenagent status (root) shows the rule that admitted each recent caller" \
  sh -c "nsenter -t $pid1 -a tokenagent status 2>&1 | grep -q 'allow\[0\]'"

# 11. apt remove keeps the configuration; dpkg --purge leaves nothing of ours.
ct env DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq tokenagent >"$work/remove.log" 2>&1 || { cat "$work/remove.log"; fail "apt-get remove tokenagent"; }
check "apt remove: service gone, /etc/tokenagent/agent.toml, store.key and the token store kept" \
  ct sh -c '! test -e /usr/bin/tokenagentd && ! systemctl is-active -q tokenagent.service && test -s /etc/tokenagent/agent.toml && test -s /etc/tokenagent/store.key && test -e /var/lib/tokenagent/tokens.db'
ct dpkg --purge tokenagent >"$work/purge.log" 2>&1 || { cat "$work/purge.log"; fail "dpkg --purge tokenagent"; }
left=$(ct sh -c '
  for f in "$@"; do [ -e "$f" ] && [ ! -d "$f" ] && echo "$f"; done
  for d in /etc/tokenagent/store.key /var/lib/tokenagent /run/tokenagent; do [ -e "$d" ] && echo "$d"; done
  find /etc/systemd -name "tokenagent.*" -type l
  exit 0' sh $files_before)
check "dpkg --purge: no file of the package, no store key or token store, no unit link${left:+ (left: $left)}" test -z "$left"
echo "after purge, what the administrator added stays: $(ct sh -c 'ls -A /etc/tokenagent /etc/systemd/system/tokenagent.service.d 2>/dev/null | tr "\n" " "')"

echo "test-systemd: $((SECONDS - t0)) s in all"
if [ ${#failed[@]} -gt 0 ]; then
  printf 'FAILED: %s\n' "${failed[@]}"
  exit 1
fi
echo "PASS: the .deb under systemd"
