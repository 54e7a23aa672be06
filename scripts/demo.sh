#!/usr/bin/env bash
# One command to see callrelay work: installs what is missing, builds the release binary, starts a
# local mosquitto on loopback and callrelay with a sample config, posts the documented PIOPIY sample
# webhooks, and prints the MQTT messages that come out. Then keeps running until Ctrl-C
# (set DEMO_EXIT=1 to stop right after the samples).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

MQTT_PORT=${DEMO_MQTT_PORT:-18830}
HTTP_PORT=${DEMO_HTTP_PORT:-18080}
TOKEN=demo-token-change-me
work=$(mktemp -d /tmp/callrelay-demo.XXXXXX)
chmod 777 "$work"   # mosquitto drops root privileges and must write its log here

scripts/install-deps.sh
echo "==> building callrelay (release; the first build takes a few minutes)"
swift build -c release --product callrelay 2>&1 | tail -n 1
bin="$root/.build/release/callrelay"

pids=()
cleanup() {
  [ -n "${cleaned:-}" ] && return
  cleaned=1
  echo; echo "==> stopping"
  [ -n "${relay_pid:-}" ] && kill -TERM "$relay_pid" 2>/dev/null && wait "$relay_pid" 2>/dev/null || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

cat > "$work/mosquitto.conf" <<CONF
listener $MQTT_PORT 127.0.0.1
allow_anonymous true
persistence false
log_dest file $work/mosquitto.log
CONF
mosquitto_bin=$(command -v mosquitto || echo /usr/sbin/mosquitto)
"$mosquitto_bin" -c "$work/mosquitto.conf" & pids+=($!)
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$MQTT_PORT) 2>/dev/null && break; sleep 0.05; done
echo "==> mosquitto on 127.0.0.1:$MQTT_PORT"

cat > "$work/callrelay.toml" <<CONF
# Demo configuration (see packaging/config/callrelay.toml for every key, documented).
[http]
listen = "127.0.0.1:$HTTP_PORT"
token = "$TOKEN"

[mqtt]
host = "127.0.0.1"
port = $MQTT_PORT
client_id = "callrelay-demo"

[storage]
path = "$work/outbox.sqlite3"
CONF
"$bin" check-config --config "$work/callrelay.toml"

# Everything callrelay publishes, as a subscriber (PBX, CRM) would see it.
mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -t 'piopiy/#' -q 1 -v | sed -u 's/^/   MQTT  /' & pids+=($!)

"$bin" run --config "$work/callrelay.toml" 2> >(sed -u 's/^/   log   /' >&2) & relay_pid=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$HTTP_PORT/readyz" >/dev/null && break; sleep 0.05; done
echo "==> callrelay on http://127.0.0.1:$HTTP_PORT (token $TOKEN)"
sleep 0.3

for f in Tests/IntegrationTests/Fixtures/piopiy/*.json; do
  name=$(basename "$f" .json)
  case "$name" in cdr_*) ep=cdr ;; *) ep=live ;; esac
  answer=$(curl -s -X POST "http://127.0.0.1:$HTTP_PORT/webhooks/piopiy/$ep?token=$TOKEN" --data-binary @"$f")
  echo "   POST  /webhooks/piopiy/$ep  $name  ->  $answer"
  sleep 0.15
done
f=Tests/IntegrationTests/Fixtures/piopiy/cdr_in_missed_leg_a.json
echo "==> PIOPIY re-sends CDRs; the re-send gets the same id, duplicate:true, and is not published again:"
echo "   POST  re-send of cdr_in_missed_leg_a  ->  $(curl -s -X POST -H "Authorization: Bearer $TOKEN" \
  "http://127.0.0.1:$HTTP_PORT/webhooks/piopiy" --data-binary @"$f")"
sleep 1

if [ "${DEMO_EXIT:-0}" = 1 ] || [ ! -t 0 ]; then exit 0; fi
echo
echo "==> running. Send your own:  curl -X POST 'http://127.0.0.1:$HTTP_PORT/webhooks/piopiy?token=$TOKEN' -d @some.json"
echo "    Ctrl-C stops callrelay (graceful drain), the subscriber and the broker."
wait "$relay_pid"
