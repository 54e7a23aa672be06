#!/usr/bin/env bash
# Runs the whole test suite: unit tests and integration tests against real mosquitto brokers that
# the tests start themselves on free loopback ports. A missing broker fails the tests; it never
# skips them.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || { echo "mosquitto is missing after install" >&2; exit 1; }
# Two cores: parallel test processes would only fight over them and over fsync.
exec swift test "$@"
