#!/usr/bin/env bash
# Installs what selfheal's demo and test suite need on a fresh machine; safe to run again.
# - the Debian packages listed in scripts/apt-packages.txt (needs root; their services are
#   not started: the lab and the tests run their own instances with their own configs);
# - this checkout as a regular (non-editable) install with its test extras: the `selfheal`
#   package and CLI, and the `selfheal.core` collection in site-packages where ansible finds
#   it. Collection dependencies come from the `ansible` package, never from Galaxy.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

mapfile -t wanted < <(grep -vE '^[[:space:]]*(#|$)' scripts/apt-packages.txt)
missing=()
for pkg in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: these Debian packages are missing and installing them needs root: ${missing[*]}" >&2
    exit 1
  fi
  echo "setup: installing Debian packages: ${missing[*]}"
  # Keep package scripts from starting system-wide daemons (a policy-rc.d answering 101),
  # unless the machine already has its own policy.
  own_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    own_policy=1
  fi
  trap '[ -n "$own_policy" ] && rm -f /usr/sbin/policy-rc.d' EXIT
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

echo "setup: installing selfheal from this checkout (with test extras)"
python3 -m pip install --quiet --disable-pip-version-check ".[test]"
echo "setup: done ($(selfheal --version))"
