#!/usr/bin/env bash
# Runs the whole test suite: unit tests and integration tests against real mosquitto brokers that
# the tests start themselves on free loopback ports, then (for a full run) a fuzz smoke, ten
# simulated power cuts and the packaging test. A missing broker or openssl fails the tests; it
# never skips them.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || { echo "mosquitto is missing after install" >&2; exit 1; }
command -v openssl >/dev/null || { echo "openssl is missing after install (the TLS tests need it)" >&2; exit 1; }
# Two cores: parallel test processes would only fight over them and over fsync.
swift test "$@"
# A full run (no arguments) also builds the .deb, installs it, runs the agent as its systemd unit
# would, passes send-test against a local broker, and purges it (needs root or sudo).
if [ $# -eq 0 ]; then
  # A bounded smoke of the four libFuzzer harnesses (docs/fuzzing.md): debug build (its asserts
  # on), 10,000 inputs each from the checked-in seeds and regressions; any finding fails.
  scripts/fuzz.sh --debug --runs 10000
  # Ten simulated power cuts under load, torn sectors included (docs/powercut.md): any answered
  # webhook lost, or an outbox set aside, fails the run.
  scripts/powercut.sh --cycles 10 --tear
  tests/packaging/run.sh
fi
