#!/usr/bin/env bash
# System packages the test suite needs, installed with apt-get when they are missing: Debian's Chromium
# (the browser tests drive it; never `playwright install`, nothing downloads at run time) and CJK fonts
# (the screenshots show Chinese, not boxes). Run by `make test`; a machine without apt-get or root is told
# what to install.
set -euo pipefail

need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
dpkg -s fonts-noto-cjk >/dev/null 2>&1 || need+=(fonts-noto-cjk)
[ ${#need[@]} -eq 0 ] && exit 0

if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
  echo "installing ${need[*]} (apt-get)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
else
  echo "error: the tests need ${need[*]}: run 'sudo apt-get install -y ${need[*]}' (or as root: make test)" >&2
  exit 1
fi
