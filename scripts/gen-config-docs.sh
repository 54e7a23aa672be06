#!/usr/bin/env bash
# Regenerates docs/configuration.md and packaging/config/callrelay.toml from the key table in
# Sources/CallRelayConfig/ConfigurationKeys.swift. The golden test in CallRelayConfigTests fails
# whenever the checked-in files differ from what this writes.
#
# Usage: scripts/gen-config-docs.sh   (from anywhere in the repository)
set -euo pipefail
cd "$(dirname "$0")/.."
CALLRELAY_UPDATE_GOLDEN=1 swift test --scratch-path "${SCRATCH_PATH:-.build}" \
    --filter 'CallRelayConfigTests.ConfigurationDocsTests/golden'
git diff --stat -- docs/configuration.md packaging/config/callrelay.toml 2>/dev/null || true
