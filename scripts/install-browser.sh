#!/usr/bin/env bash
# Installs Debian's Chromium for the browser end-to-end test (usage_assets_tests/test_browser.py).
# Idempotent: does nothing when /usr/bin/chromium exists. Playwright drives this browser through
# its executable path; we never run `playwright install` (no browser downloads).
set -euo pipefail

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-browser.sh: $CHROMIUM is missing and apt-get is not available;" \
        "install Chromium with your system's package manager." >&2
    exit 1
fi

SUDO=
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "install-browser.sh: installing Chromium needs root (or sudo)." >&2
        exit 1
    fi
fi

echo "install-browser.sh: installing chromium with apt-get" >&2
if ! { $SUDO apt-get update -qq &&
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }; then
    echo "install-browser.sh: could not install chromium with apt-get (see above)." >&2
    exit 1
fi

if [ ! -x "$CHROMIUM" ]; then
    echo "install-browser.sh: apt-get finished but $CHROMIUM does not exist." >&2
    exit 1
fi
