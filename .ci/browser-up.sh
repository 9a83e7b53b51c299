#!/usr/bin/env bash
# Install a headless browser for the report test (tests/test_workflow_e2e.py): Debian's chromium
# and chromium-driver, driven by selenium (a dev dependency). Debian/Ubuntu only, as root; where
# it cannot install them it says so and exits non-zero, and the browser test then skips.
set -euo pipefail
say() { echo "browser-up: $*" >&2; }

if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    exit 0
fi
[ "$(id -u)" = 0 ] || { say "not root: cannot install chromium here"; exit 1; }
command -v apt-get >/dev/null || { say "apt-get not available"; exit 1; }
export DEBIAN_FRONTEND=noninteractive
timeout 600 apt-get update -q >/dev/null || { say "apt-get update failed"; exit 1; }
timeout 900 apt-get install -y -q --no-install-recommends chromium chromium-driver >/dev/null \
    || { say "apt-get install chromium chromium-driver failed"; exit 1; }
