"""The artifact store as requests meet it: what a store error means for the request that met
it. A store that cannot be reached is a 503 (try again); an artifact that is missing or not
the bytes its row recorded is the artifact's fault, said by the caller (`unusable`)."""

from collections.abc import Callable
from pathlib import Path

from app.core.errors import AppError, Unavailable
from app.storage import ArtifactStore, Stored, StoreError, StoreUnavailable


def put_artifact(store: ArtifactStore, key: str, staged: Path) -> Stored:
    """Publish a file written under store.staged(); 503 when the store cannot take it."""
    try:
        return store.put(key, staged, consume=True)
    except StoreUnavailable as exc:
        raise unreachable(exc) from exc


def fetch_artifact(
    store: ArtifactStore, key: str, sha256: str, unusable: Callable[[str], AppError]
) -> Path:
    """The checked local file of key; unusable(reason) when it is missing or corrupt."""
    try:
        return store.fetch(key, sha256)
    except StoreUnavailable as exc:
        raise unreachable(exc) from exc
    except StoreError as exc:
        raise unusable(str(exc)) from exc


def unreachable(exc: StoreUnavailable) -> Unavailable:
    return Unavailable(f"the artifact store cannot be reached just now; try again: {exc}")
