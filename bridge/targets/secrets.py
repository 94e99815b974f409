"""Where a user's remote credentials live: one directory (``$GESTAN_BRIDGE_TOKEN_DIR``,
default ``~/.local/share/gestan-bridge/tokens/``, mode 0700), one file per user and kind
(mode 0600), written atomically, never printed or logged. Google's tokens, Outlook's
connections and msal's token caches all go through here."""

from __future__ import annotations

import contextlib
import os
import threading
import urllib.parse
from pathlib import Path

from bridge.config import setting


def token_dir() -> Path:
    """Where the files live: ``$GESTAN_BRIDGE_TOKEN_DIR``, else ``[gestan] token_dir``, else
    the XDG-style default (bridge.config)."""
    return setting("token_dir")


def secret_path(login: str, suffix: str = "", directory: Path | None = None) -> Path:
    """The login's file (``suffix`` names the kind: "" Google, ".outlook" ...); the name is
    the login percent-encoded (letters, digits, ``._-~%``), so two logins never share a
    file and none can hold a path separator."""
    if not login:
        raise ValueError("empty login")
    name = urllib.parse.quote(login, safe="")
    return (directory or token_dir()) / f"{name}{suffix}.json"


def private_dir(directory: Path) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    if directory.stat().st_mode & 0o077:
        directory.chmod(0o700)


def write_private(path: Path, data: bytes) -> Path:
    """Write ``path`` atomically (a 0600 temporary file renamed over the old one), so that
    a concurrent reader sees the old or the new content, never half of one."""
    private_dir(path.parent)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise
    return path


def remove(path: Path) -> bool:
    """Forget a file; False if there was none."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True
