#!/usr/bin/env bash
# Make PostgreSQL server binaries (initdb, pg_ctl, postgres) available to the test suite.
#
# The tests start their own throwaway server (tests/pgserver.py) on a free 127.0.0.1 port;
# they never use a system cluster. So: if the binaries are already found (PATH or
# /usr/lib/postgresql/*/bin), do nothing. Otherwise install Debian's `postgresql` package
# without letting it start its cluster, and stop any cluster that is running anyway.
# Idempotent and quiet; exits non-zero with a clear message when it cannot install.
set -euo pipefail

have_server_binaries() {
    local dir
    if command -v initdb >/dev/null && command -v pg_ctl >/dev/null \
        && command -v postgres >/dev/null; then
        return 0
    fi
    for dir in /usr/lib/postgresql/*/bin; do
        if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && [ -x "$dir/postgres" ]; then
            return 0
        fi
    done
    return 1
}

fail() {
    echo "install-postgres: $*" >&2
    exit 1
}

have_server_binaries && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    message="PostgreSQL server binaries (initdb, pg_ctl, postgres) not found, and cannot install"
    message+=" them here (needs root and apt-get): install Debian's 'postgresql' package."
    if [ -n "${CI:-}" ] && [ "${CI}" != "false" ]; then
        fail "$message"
    fi
    echo "install-postgres: warning: $message PostgreSQL tests will be skipped." >&2
    exit 0
fi

echo "install-postgres: installing Debian's postgresql package ..." >&2
log="$(mktemp -t install-postgres.XXXXXX.log)"
policy=/usr/sbin/policy-rc.d
cleanup() {
    if [ -n "${created_policy:-}" ]; then rm -f "$policy"; fi
    rm -f "$log"
}
trap cleanup EXIT

# Forbid services from starting during the installation (honoured by invoke-rc.d and
# deb-systemd-invoke), unless the machine already has its own policy.
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    created_policy=1
fi

export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -q \
        && apt-get install -y -q --no-install-recommends postgresql; } >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    fail "apt-get could not install the 'postgresql' package (full log above)."
fi

# Belt and braces: no Debian-managed cluster may keep running (the tests never use it).
if command -v pg_lsclusters >/dev/null; then
    pg_lsclusters --no-header 2>/dev/null | while read -r version name _port status _rest; do
        if [ "$status" = online ] || [ "${status#online}" != "$status" ]; then
            pg_ctlcluster "$version" "$name" stop >/dev/null 2>&1 || true
        fi
    done
fi

have_server_binaries \
    || fail "the 'postgresql' package is installed but initdb/pg_ctl/postgres are not found."
echo "install-postgres: done ($(ls -d /usr/lib/postgresql/*/bin | tr '\n' ' '))" >&2
