#!/usr/bin/env bash
# Install Debian's Chromium for the browser tests (tests/test_app_browser.py) when it is missing.
#
# Does nothing when /usr/bin/chromium exists, when not running as root, or without apt-get: the
# browser tests then skip with a reason. A failed install (no network, another distribution) only
# prints a warning, so `make test` still runs everything else.
set -u

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install_browser: $CHROMIUM not found and not root; the browser tests will be skipped" >&2
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_browser: $CHROMIUM not found and no apt-get; the browser tests will be skipped" >&2
    exit 0
fi
echo "install_browser: installing Debian's chromium (apt-get) for the browser tests" >&2
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq chromium; }; then
    echo "install_browser: apt-get could not install chromium; the browser tests will be skipped" >&2
fi
exit 0
