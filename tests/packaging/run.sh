#!/usr/bin/env bash
# The packaging test (CI runs it from scripts/test.sh, as root, without systemd):
#   1. builds the .deb with packaging/build-deb.sh (or takes CALLRELAY_DEB=path);
#   2. checks `dpkg-deb -I` (fields, exact Depends, conffiles, maintainer scripts) and `-c`
#      (every path, mode and owner), the unit file with systemd-analyze, and lintian;
#   3. installs it with dpkg -i (twice: the second is an upgrade), checks the user, the state
#      directory, the config's permissions, and that the shipped config passes check-config;
#   4. configures it like a technician (edits /etc/callrelay/callrelay.toml to use a local test
#      broker), starts ExecStartPre and ExecStart exactly as the unit says, as its User=, with
#      no new privileges and no capabilities, passes `callrelay send-test`, and stops it with
#      SIGTERM (exit 0); the outbox it starts on was written by v0.1.0 (the upgrade path:
#      migrated in place, its pending events published once, its delivered ones not);
#   5. dpkg -r keeps /var/lib/callrelay, dpkg -P removes it.
# It cleans up after itself (the package is purged even when a step fails), so it can run again.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "the packaging test installs a package: run it as root" >&2; exit 1; }
  exec sudo --preserve-env=CALLRELAY_DEB,CALLRELAY_PACKAGING_TEST_FORCE,PATH "$0" "$@"
fi

step() { echo "==> $*"; }
fail() {
  echo "FAIL: $*" >&2
  exit 1
}
expect_eq() { [ "$1" = "$2" ] || fail "$3: expected '$2', got '$1'"; }

if dpkg-query -W -f='${Status}' callrelay 2>/dev/null | grep -q "ok installed" && [ "${CALLRELAY_PACKAGING_TEST_FORCE:-0}" != 1 ]; then
  fail "callrelay is already installed here; this test would purge it (CALLRELAY_PACKAGING_TEST_FORCE=1 allows that)"
fi

work=$(mktemp -d /tmp/callrelay-pkgtest.XXXXXX)
chmod 0755 "$work"
agent_pid=""
broker_pid=""
cleanup() {
  status=$?
  [ -n "$agent_pid" ] && kill -KILL "$agent_pid" 2>/dev/null || true
  [ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  if dpkg-query -W -f='${Status}' callrelay 2>/dev/null | grep -qv "not-installed"; then
    dpkg --purge callrelay >/dev/null 2>&1 || true
  fi
  if [ $status -ne 0 ]; then
    for log in "$work"/agent.log "$work"/mosquitto.log; do
      [ -s "$log" ] && { echo "--- $log" >&2; tail -n 40 "$log" >&2; }
    done
  fi
  rm -rf "$work"
  exit $status
}
trap cleanup EXIT

free_port() {
  local port
  for port in $(shuf -i 20000-59999 -n 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
  done
  fail "no free port"
}

# ---------------------------------------------------------------------------------------------
step "building the package"
deb=${CALLRELAY_DEB:-}
if [ -z "$deb" ]; then
  packaging/build-deb.sh
  deb=$(ls -t dist/callrelay_*_"$(dpkg --print-architecture)".deb | head -n 1)
fi
[ -f "$deb" ] || fail "no package at $deb"
echo "    $deb"

# ---------------------------------------------------------------------------------------------
step "dpkg-deb -I: fields, Depends, conffiles, maintainer scripts"
field() { dpkg-deb -f "$deb" "$1"; }
extract="$work/extract"
dpkg-deb -x "$deb" "$extract"
dpkg-deb -e "$deb" "$extract/DEBIAN"
version=$("$extract/usr/bin/callrelay" --version)
expect_eq "$(field Package)" callrelay "Package"
expect_eq "$(field Version)" "$version" "Version (callrelay --version)"
expect_eq "$(field Architecture)" "$(dpkg --print-architecture)" "Architecture"
[ -n "$(field Maintainer)" ] && [ -n "$(field Description)" ] && [ -n "$(field Installed-Size)" ] || fail "Maintainer, Description or Installed-Size missing"

# Depends names exactly the packages that ship the binary's dynamic libraries.
owner_of() {
  local lib=$1 path candidate
  path=$(ldconfig -p | awk -v l="$lib" '$1 == l { print $NF; exit }')
  [ -n "$path" ] || fail "ldconfig does not know $lib"
  for candidate in "$path" "$(readlink -f "$path")" "/usr$path" "${path#/usr}" "$(readlink -f "$path" | sed 's|^/usr||')"; do
    dpkg -S "$candidate" 2>/dev/null | head -n 1 | cut -d: -f1 && return
  done
  fail "no package owns $path"
}
expected_depends=$(for lib in $(objdump -p "$extract/usr/bin/callrelay" | awk '/NEEDED/ { print $2 }'); do owner_of "$lib"; done | sort -u | xargs)
actual_depends=$(field Depends | tr ',' '\n' | sed 's/(.*)//; s/ //g' | grep -v '^$' | sort -u | xargs)
expect_eq "$actual_depends" "$expected_depends" "Depends (packages of the NEEDED libraries)"
echo "    Depends: $(field Depends)"
if ldd "$extract/usr/bin/callrelay" | grep -Eq 'libswift|libFoundation|lib_Foundation|libdispatch|not found'; then
  fail "Swift or Foundation is linked dynamically: $(ldd "$extract/usr/bin/callrelay")"
fi

expect_eq "$(cat "$extract/DEBIAN/conffiles")" "/etc/callrelay/callrelay.toml" "conffiles"
for script in postinst prerm postrm; do
  [ -x "$extract/DEBIAN/$script" ] || fail "$script is missing or not executable"
  sh -n "$extract/DEBIAN/$script" || fail "$script: syntax error"
  head -n 1 "$extract/DEBIAN/$script" | grep -q '^#!/bin/sh' || fail "$script: not a /bin/sh script"
  grep -q '^set -e' "$extract/DEBIAN/$script" || fail "$script: no set -e"
done
grep -q 'useradd --system' "$extract/DEBIAN/postinst" || fail "postinst does not create the system user"
grep -q 'deb-systemd-helper enable' "$extract/DEBIAN/postinst" || fail "postinst does not enable the unit"
grep -q 'rm -rf /var/lib/callrelay' "$extract/DEBIAN/postrm" || fail "postrm does not delete the state on purge"
(cd "$extract" && md5sum --quiet -c DEBIAN/md5sums) || fail "md5sums do not match"

# ---------------------------------------------------------------------------------------------
step "dpkg-deb -c: paths, modes, owners"
listing=$(dpkg-deb -c "$deb" | awk '$1 !~ /^d/ { print $1, $2, $6 }' | sort)
expected_listing=$(sort <<'EOF'
-rw-r--r-- root/root ./etc/callrelay/callrelay.toml
-rw-r--r-- root/root ./lib/systemd/system/callrelay.service
-rwxr-xr-x root/root ./usr/bin/callrelay
-rw-r--r-- root/root ./usr/share/doc/callrelay/changelog.gz
-rw-r--r-- root/root ./usr/share/doc/callrelay/configuration.md.gz
-rw-r--r-- root/root ./usr/share/doc/callrelay/copyright
-rw-r--r-- root/root ./usr/share/doc/callrelay/operations.md.gz
-rw-r--r-- root/root ./usr/share/lintian/overrides/callrelay
-rw-r--r-- root/root ./usr/share/man/man1/callrelay.1.gz
EOF
)
[ "$listing" = "$expected_listing" ] || fail "package contents differ:
$(diff <(echo "$expected_listing") <(echo "$listing"))"
bad_dirs=$(dpkg-deb -c "$deb" | awk '$1 ~ /^d/ && ($1 != "drwxr-xr-x" || $2 != "root/root")')
[ -z "$bad_dirs" ] || fail "directories not 0755 root/root: $bad_dirs"
cmp -s "$extract/etc/callrelay/callrelay.toml" packaging/config/callrelay.toml || fail "the shipped config is not packaging/config/callrelay.toml"

# ---------------------------------------------------------------------------------------------
step "the unit: required settings"
unit="$extract/lib/systemd/system/callrelay.service"
for line in "User=callrelay" "StateDirectory=callrelay" "ExecStartPre=/usr/bin/callrelay check-config --config /etc/callrelay/callrelay.toml" \
  "ExecStart=/usr/bin/callrelay run --config /etc/callrelay/callrelay.toml" "Restart=on-failure" "RestartPreventExitStatus=78" \
  "NoNewPrivileges=yes" "ProtectSystem=strict" "ProtectHome=yes" "PrivateTmp=yes" "WantedBy=multi-user.target"; do
  grep -qxF "$line" "$unit" || fail "callrelay.service lacks '$line'"
done
if grep -E '^(ReadWritePaths|ReadWriteDirectories)=' "$unit"; then fail "the unit may write only to its state directory"; fi

# ---------------------------------------------------------------------------------------------
step "lintian"
if ! report=$(lintian --fail-on error,warning,info --info --display-info "$deb" 2>&1); then
  fail "lintian reports errors, warnings or info tags:
$report"
fi
echo "    clean: no error, warning or info tag (overrides, each with its reason: packaging/lintian/callrelay)"

# ---------------------------------------------------------------------------------------------
step "dpkg -i (install, then again as an upgrade)"
dpkg -i "$deb" >/dev/null
dpkg -i "$deb" >/dev/null
getent passwd callrelay >/dev/null || fail "no callrelay user"
getent group callrelay >/dev/null || fail "no callrelay group"
uid=$(id -u callrelay)
[ "$uid" -lt 1000 ] || fail "callrelay is not a system user (uid $uid)"
expect_eq "$(getent passwd callrelay | cut -d: -f7)" "/usr/sbin/nologin" "callrelay's shell"
expect_eq "$(stat -c '%U:%G %a' /var/lib/callrelay)" "callrelay:callrelay 750" "/var/lib/callrelay"
expect_eq "$(stat -c '%U:%G %a' /etc/callrelay/callrelay.toml)" "root:callrelay 640" "/etc/callrelay/callrelay.toml"
[ -L /etc/systemd/system/multi-user.target.wants/callrelay.service ] || fail "the unit is not enabled"
callrelay check-config >/dev/null || fail "the shipped config does not pass check-config"

# systemd-analyze verify, from the systemd package unpacked aside (systemd does not run here and
# is not installed: installing it would change the machine).
sa="$work/systemd"
mkdir -p "$sa"
(cd "$sa" && { apt-get download systemd libsystemd-shared >/dev/null 2>&1 || { apt-get update -qq && apt-get download systemd libsystemd-shared >/dev/null; }; }) ||
  fail "cannot download systemd to verify the unit"
for f in "$sa"/*.deb; do dpkg-deb -x "$f" "$sa/root"; done
analyze() { LD_LIBRARY_PATH="$sa/root/usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH)/systemd" "$sa/root/usr/bin/systemd-analyze" "$@"; }
analyze verify --man=no /lib/systemd/system/callrelay.service || fail "systemd-analyze verify callrelay.service"
exposure=$(analyze security --offline=true --no-pager /lib/systemd/system/callrelay.service 2>&1 | sed -n 's/.*Overall exposure level for callrelay.service: //p')
echo "    systemd-analyze verify: ok; security exposure: $exposure"
awk -v e="${exposure%% *}" 'BEGIN { exit !(e + 0 <= 2.0) }' || fail "exposure $exposure is above 2.0"

# ---------------------------------------------------------------------------------------------
step "configure like a technician: a local broker, a token"
mqtt_port=$(free_port)
http_port=$(free_port)
chmod 0777 "$work"  # mosquitto drops from root to its own user and writes its log here
cat >"$work/mosquitto.conf" <<EOF
listener $mqtt_port 127.0.0.1
allow_anonymous true
persistence false
log_dest file $work/mosquitto.log
EOF
mosquitto_bin=$(command -v mosquitto || echo /usr/sbin/mosquitto)
[ -x "$mosquitto_bin" ] || fail "mosquitto is not installed"
"$mosquitto_bin" -c "$work/mosquitto.conf" &
broker_pid=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$mqtt_port") 2>/dev/null && break; sleep 0.05; done
token=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
config=/etc/callrelay/callrelay.toml
sed -i -e "s|^# listen = .*|listen = \"127.0.0.1:$http_port\"|" -e "s|^# token = \"\"|token = \"$token\"|" \
  -e "s|^# port = 1883|port = $mqtt_port|" -e "s|^# client_id = \"callrelay\"|client_id = \"callrelay-pkgtest\"|" "$config"
grep -q "^port = $mqtt_port" "$config" && grep -q "^token = " "$config" || fail "could not edit $config"
expect_eq "$(stat -c '%U:%G %a' "$config")" "root:callrelay 640" "the edited config keeps its permissions"

# ---------------------------------------------------------------------------------------------
step "an outbox left by v0.1.0 (3 events delivered, 3 pending), as an upgrade finds it"
install -o callrelay -g callrelay -m 0640 "$root/Tests/IntegrationTests/Fixtures/v0.1.0-outbox.db" /var/lib/callrelay/outbox.sqlite3
rm -f /var/lib/callrelay/outbox.sqlite3-wal /var/lib/callrelay/outbox.sqlite3-shm
# As the service user: status opens the file, and must leave nothing root-owned beside it.
out=$(runuser -u callrelay -- callrelay status --config /etc/callrelay/callrelay.toml 2>&1 || true)
grep -q "pending: *3" <<<"$out" || fail "status does not read the v0.1.0 outbox before its migration:
$out"

# ---------------------------------------------------------------------------------------------
step "start it as the unit would (User=, WorkingDirectory=, UMask=, NoNewPrivileges=, no capabilities)"
unit=/lib/systemd/system/callrelay.service
user=$(sed -n 's/^User=//p' "$unit")
group=$(sed -n 's/^Group=//p' "$unit")
umask_value=$(sed -n 's/^UMask=//p' "$unit")
workdir=$(sed -n 's/^WorkingDirectory=//p' "$unit")
read -r -a pre <<<"$(sed -n 's/^ExecStartPre=//p' "$unit")"
read -r -a start <<<"$(sed -n 's/^ExecStart=//p' "$unit")"
# Replaces the calling (sub)shell, so the background job's pid is the agent's.
as_unit() {
  cd "$workdir"
  umask "$umask_value"
  exec env -i PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 \
    setpriv --reuid="$user" --regid="$group" --init-groups --no-new-privs --inh-caps=-all --bounding-set=-all "$@"
}
(as_unit "${pre[@]}") || fail "ExecStartPre (check-config as $user) failed"
as_unit "${start[@]}" 2>"$work/agent.log" &
agent_pid=$!
ready=""
for _ in $(seq 200); do
  if curl -fs "http://127.0.0.1:$http_port/readyz" >/dev/null 2>&1; then ready=1; break; fi
  kill -0 "$agent_pid" 2>/dev/null || fail "the agent exited at start"
  sleep 0.05
done
[ -n "$ready" ] || fail "the agent (running as $user) does not answer GET /readyz: $(curl -sS -o /dev/null -w '%{http_code}' "http://127.0.0.1:$http_port/readyz" 2>&1)"
expect_eq "$(stat -c %U "/proc/$agent_pid") $(readlink "/proc/$agent_pid/exe")" "$user /usr/bin/callrelay" "the agent's user and program"

step "callrelay check-config --connect and send-test (as root, default config path)"
out=$(callrelay check-config --connect) || fail "check-config --connect:
$out"
echo "$out" | sed 's/^/    /'
out=$(callrelay send-test) || fail "send-test did not pass:
$out"
echo "$out" | sed 's/^/    /'
grep -q '^PASS: ' <<<"$out" || fail "send-test printed no PASS"
grep -q "$token" <<<"$out$(cat "$work/agent.log")" && fail "the token appears in the output or the log"
# Read the whole body first: with pipefail, `curl | grep -q` fails when grep exits before curl
# has written everything (SIGPIPE), which a longer /metrics made happen.
metrics=$(curl -fs "http://127.0.0.1:$http_port/metrics") || fail "/metrics did not answer"
grep -qx "callrelay_mqtt_connected 1" <<<"$metrics" || fail "/metrics does not say connected"
grep -q "outbox migrated from schema 1 to 2" "$work/agent.log" || fail "no migration line in the agent's log"
for _ in $(seq 100); do
  out=$(callrelay status 2>&1 || true)
  grep -q "pending: *0" <<<"$out" && break
  sleep 0.1
done
grep -q "pending: *0" <<<"$out" || fail "the v0.1.0 outbox's pending events were not delivered:
$out"
delivered=$(sed -n 's/^ *delivered: *\([0-9]*\).*/\1/p' <<<"$out")
[ "${delivered:-0}" -ge 7 ] || fail "expected the 3 + 3 migrated events and send-test's as delivered, status says:
$out"
echo "    v0.1.0 outbox migrated: $(tr -s ' ' <<<"$out" | grep -E 'pending|delivered' | tr '\n' ' ')"
# Nothing the checks did as root may leave root-owned files for the agent to trip on.
root_owned=$(find /var/lib/callrelay ! -user "$user")
[ -z "$root_owned" ] || fail "files in /var/lib/callrelay not owned by $user: $root_owned"

step "SIGTERM: drain and exit 0"
kill -TERM "$agent_pid"
set +e
wait "$agent_pid"
code=$?
set -e
agent_pid=""
expect_eq "$code" 0 "exit status after SIGTERM"
grep -q "stopped" "$work/agent.log" || fail "no 'stopped' line in the agent's log"

# ---------------------------------------------------------------------------------------------
step "dpkg -r keeps the outbox; dpkg -P removes it"
dpkg -r callrelay >/dev/null
[ ! -e /usr/bin/callrelay ] || fail "/usr/bin/callrelay survived dpkg -r"
[ -f /var/lib/callrelay/outbox.sqlite3 ] || fail "dpkg -r deleted the outbox"
[ -f "$config" ] || fail "dpkg -r deleted the conffile"
dpkg -P callrelay >/dev/null
[ ! -e /var/lib/callrelay ] || fail "dpkg -P left /var/lib/callrelay"
[ ! -e /etc/callrelay ] || fail "dpkg -P left /etc/callrelay"
[ ! -e /etc/systemd/system/multi-user.target.wants/callrelay.service ] || fail "dpkg -P left the unit enabled"
if dpkg-query -W -f='${Status}' callrelay 2>/dev/null | grep -Eq "ok installed|config-files"; then fail "callrelay is still known to dpkg"; fi

echo "PASS: packaging test ($(basename "$deb"), $(stat -c %s "$deb") bytes)"
