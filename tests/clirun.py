"""Running ``gestan-bridge`` in tests: in-process through ``bridge.cli.main.main`` (what a
user types, without paying an interpreter start per command), or as the installed console
script where the process itself matters (its exit status, a moved clock)."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping

from bridge.cli.main import main


def script() -> str:
    """The installed ``gestan-bridge`` console script."""
    return shutil.which("gestan-bridge") or os.path.join(os.path.dirname(sys.executable),
                                                         "gestan-bridge")


def invoke(env: Mapping[str, str], *args: str, input_text: str | None = None
           ) -> subprocess.CompletedProcess:
    """``gestan-bridge ARGS`` in this process with ``env`` set (and put back after): its
    exit status, stdout and stderr, as a subprocess would give them."""
    changed = {k: os.environ.get(k) for k in env if os.environ.get(k) != env[k]}
    out, err = io.StringIO(), io.StringIO()
    stdin = sys.stdin
    os.environ.update({k: env[k] for k in changed})
    sys.stdin = io.StringIO(input_text or "")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        sys.stdin = stdin
        for key, value in changed.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return subprocess.CompletedProcess(["gestan-bridge", *args], code, out.getvalue(),
                                       err.getvalue())


def run_script(env: Mapping[str, str], *args: str, prefix: tuple[str, ...] = ()
               ) -> subprocess.CompletedProcess:
    """The installed console script in its own process (``prefix``: e.g. faketime)."""
    return subprocess.run([*prefix, script(), *args], capture_output=True, text=True,
                          timeout=120, env=dict(env))
