#!/usr/bin/env bash
# gestan-bridge's two set-up commands (see README):
#   ./run.sh demo [serve options]   install into .venv, then serve the demo agenda
#   ./run.sh test [pytest options]  install into .venv, then lint and run the whole suite
set -euo pipefail
cd "$(dirname "$0")"
VENV="${GESTAN_BRIDGE_VENV:-.venv}"

setup() {
    if [ ! -x "$VENV/bin/gestan-bridge" ] || [ pyproject.toml -nt "$VENV/.installed" ]; then
        echo "installing gestan-bridge into $VENV ..." >&2
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install -q --disable-pip-version-check -e ".[test]"
        touch "$VENV/.installed"
    fi
}

case "${1:-}" in
    demo)
        shift
        setup
        exec "$VENV/bin/gestan-bridge" serve --demo "$@"
        ;;
    test)
        shift
        setup
        if [ -x .ci/install-postgres.sh ] || [ -f .ci/install-postgres.sh ]; then
            bash .ci/install-postgres.sh
        fi
        bash .ci/install-tools.sh
        "$VENV/bin/ruff" check bridge plugins tests
        # one worker per core: the servers and fakes each test starts bind free ports
        exec "$VENV/bin/python" -m pytest -q -n auto "$@"
        ;;
    *)
        echo "usage: ./run.sh demo [--port N --db URL ...] | ./run.sh test [pytest args]" >&2
        exit 2
        ;;
esac
