#!/usr/bin/env bash
# Installs what callrelay needs to build, test and run its demo on Debian 12 / Ubuntu 22.04+:
# libmosquitto-dev, libsqlite3-dev (build), mosquitto + mosquitto-clients (tests, demo), curl, wrk (bench),
# openssl (the TLS tests make their own CA), python3 and a C compiler (scripts/powercut.sh), dpkg-dev + binutils + lintian (packaging/build-deb.sh and
# the packaging test in tests/packaging).
# Idempotent: does nothing when everything is present.
set -euo pipefail

need=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for p in libmosquitto-dev libsqlite3-dev mosquitto mosquitto-clients curl pkg-config openssl dpkg-dev binutils lintian; do
  have_pkg "$p" || need+=("$p")
done
if [ "${CALLRELAY_BENCH:-0}" = 1 ]; then have_pkg wrk || need+=(wrk); fi
# The power-cut harness (scripts/powercut.sh) and the benchmarks are Python 3 (standard library),
# and its shim is built with the system C compiler.
command -v python3 >/dev/null || need+=(python3)
command -v cc >/dev/null || command -v clang >/dev/null || need+=(gcc)
[ ${#need[@]} -eq 0 ] && exit 0

echo "installing: ${need[*]}" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "need root (or sudo) to apt-get install ${need[*]}" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian starts a system mosquitto on :1883 where an init system runs; callrelay's tests and demo use
# their own brokers on other ports, so it is left alone.
