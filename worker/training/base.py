"""A pretrained job's base model, found by the id its spec was pinned to and checked before
training: the folder must still hold exactly the files it was registered with."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.base_models.folder import inspect_folder
from app.base_models.location import base_folder
from app.core.config import Settings
from app.core.db import session_scope
from app.core.kinds import Arch
from app.models import BaseModelRow
from app.schemas.job import JobSpec


@dataclass(frozen=True)
class Base:
    id: str
    name: str
    family: str
    sha256: str
    source: str
    folder_column: str
    folder: Path  # on this host

    def meta(self) -> dict[str, Any]:
        """What a version stores to find its base again (app/ml/bundle.py)."""
        return {
            "id": self.id,
            "name": self.name,
            "sha256": self.sha256,
            "source": self.source,
            "folder": self.folder_column,
        }


def load_base(spec: JobSpec, settings: Settings) -> Base | None:
    """None unless the job fine-tunes a base. A base that is gone or whose files changed fails
    the job with the reason: training on other weights than the ones named is never right."""
    if spec.model.arch != Arch.pretrained:
        return None
    with session_scope() as session:
        row = session.get(BaseModelRow, spec.model.base)
        if row is None:
            raise LookupError(f"base model {spec.model.base} no longer exists")
        base = Base(
            row.id,
            row.name,
            row.family,
            row.sha256,
            row.source,
            row.folder,
            base_folder(settings, row.source, row.folder),
        )
    if inspect_folder(base.folder, settings).sha256 != base.sha256:
        raise ValueError(f"base model '{base.name}': its files changed since it was registered")
    return base
