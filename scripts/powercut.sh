#!/usr/bin/env bash
# Power-cut harness (issue 11, docs/powercut.md): cuts the power under load N times and checks
# that no webhook answered 200 is lost and no outbox is set aside. Its last line is
#   cycles N, answered A, lost L, set aside S, max recovery X ms
#
#   scripts/powercut.sh [--cycles N] [--binary PATH] [--synchronous full|normal] [--tear] [--seed S] [--keep]
#
# Builds the LD_PRELOAD shim (tests/powercut/powercut.c) with the system compiler into
# .build-powercut/, and uses the debug binary (.build/debug/callrelay, built when missing) unless
# --binary is given. Needs mosquitto, mosquitto_sub, python3 (scripts/install-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

binary=""
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary="$2"; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) args+=("$1"); shift ;;
  esac
done

mkdir -p .build-powercut
shim=$PWD/.build-powercut/powercut.so
if [ ! -f "$shim" ] || [ tests/powercut/powercut.c -nt "$shim" ]; then
  compiler=${CC:-$(command -v cc || command -v clang)}
  "$compiler" -O2 -Wall -Wextra -Wno-format-truncation -shared -fPIC -o "$shim" tests/powercut/powercut.c -ldl -lpthread
fi
if [ -z "$binary" ]; then
  binary=$PWD/.build/debug/callrelay
  [ -x "$binary" ] || swift build --product callrelay 2>&1 | tail -n 1
fi
exec python3 tests/powercut/powercut.py --binary "$binary" --shim "$shim" ${args[@]+"${args[@]}"}
