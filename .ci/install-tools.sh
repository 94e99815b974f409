#!/usr/bin/env bash
# Command-line tools the test suite runs (not Python packages): faketime, which moves a CLI
# process's clock (tests/test_sync_cli.py: appointments entering the one-year window as
# time passes). Idempotent and quiet; exits non-zero with a clear message when it cannot.
set -euo pipefail

command -v faketime >/dev/null && exit 0
if ! command -v apt-get >/dev/null; then
    echo "install-tools: faketime is missing and apt-get is not available" >&2
    exit 1
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -qq faketime >/dev/null 2>&1 \
    || { $SUDO apt-get update -qq >/dev/null 2>&1 && \
         $SUDO apt-get install -y -qq faketime >/dev/null 2>&1; } \
    || { echo "install-tools: could not install faketime (apt-get failed)" >&2; exit 1; }
command -v faketime >/dev/null || { echo "install-tools: faketime not found after install" >&2; exit 1; }
