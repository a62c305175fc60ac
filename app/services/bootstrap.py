"""The first admin key of an embedded install: created once, printed once, kept 0600."""

import os
from collections.abc import Callable

from app.core.config import Settings
from app.core.db import session_scope
from app.services.auth import create_key, has_active_key


def ensure_admin_key(settings: Settings, say: Callable[[str], None]) -> None:
    """Without TRAINSERVE_API_KEY and with no key yet, create an admin key and show it."""
    key_file = settings.data_dir / "admin.key"
    with session_scope() as session:
        if settings.api_key or has_active_key(session):
            if key_file.is_file():
                say(f"admin key: see {key_file}")
            return
        _, plaintext = create_key(session, "admin (created by trainserve up)", ["admin"])
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(plaintext + "\n")
        os.chmod(key_file, 0o600)
    say(f"admin API key (shown once; also written to {key_file}):\n  {plaintext}")
