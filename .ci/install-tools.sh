#!/usr/bin/env bash
# Command-line tools the test suite runs (not Python packages): faketime, which moves a CLI
# process's clock (tests/test_sync_cli.py: appointments entering the one-year window as
# time passes), and nginx, the reverse proxy of deploy/nginx/ that tests/test_deploy.py runs
# on 127.0.0.1 (Debian's nginx-light; its own service is never started). Idempotent and
# quiet; exits non-zero with a clear message when it cannot.
set -euo pipefail

missing=()
command -v faketime >/dev/null || missing+=(faketime)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
[ "${#missing[@]}" -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
    echo "install-tools: ${missing[*]} missing and apt-get is not available" >&2
    exit 1
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
# Forbid services from starting during the installation (nginx's would listen on port 80),
# unless the machine already has its own policy.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
    trap '$SUDO rm -f "$policy"' EXIT
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
    || { $SUDO apt-get update -qq >/dev/null 2>&1 && \
         $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1; } \
    || { echo "install-tools: could not install ${missing[*]} (apt-get failed)" >&2; exit 1; }
command -v faketime >/dev/null || { echo "install-tools: faketime not found after install" >&2; exit 1; }
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null \
    || { echo "install-tools: nginx not found after install" >&2; exit 1; }
