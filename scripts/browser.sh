#!/usr/bin/env bash
# The dashboard's browser tests drive Debian's chromium (through playwright, which finds it
# at /usr/bin/chromium). Installed here when missing, as the machines allow (root, apt).
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "the browser tests need /usr/bin/chromium: apt-get install chromium chromium-driver" >&2
    exit 1
fi
echo "installing chromium for the browser tests"
DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null; }
