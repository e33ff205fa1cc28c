#!/usr/bin/env bash
# Install headless Chromium from Debian for the console's browser tests
# (tests/api/test_browser.py drives /usr/bin/chromium through Playwright).
# Needs root and apt; CI runs as root. Does nothing when Chromium is already there.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
  echo "install-browser: /usr/bin/chromium is already installed"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-browser: run as root (apt-get install chromium chromium-driver)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium chromium-driver
/usr/bin/chromium --version
