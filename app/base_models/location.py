"""Where a base model's files are: a folder under a root the operator set, named by server
values only (an id, or the operator's own subfolder name), never by a request."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.core.config import Settings
from app.core.errors import Unavailable

UPLOAD = "upload"  # POST /v1/base-models: <data dir>/base-models/<id>/model
IMPORT = "import"  # `trainserve base-models import`: the same place, shared and read-only
OPERATOR_DIR = "operator-dir"  # a subfolder of TRAINSERVE_BASE_MODELS_DIR, read in place
MODEL_SUBFOLDER = "model"


def folder_finder(settings: Settings) -> Callable[[dict[str, Any]], Path]:
    """A stored version's base (its options["base"]: source and folder) → its folder here."""
    return lambda base: base_folder(settings, base["source"], base["folder"])


def base_folder(settings: Settings, source: str, folder: str) -> Path:
    """The folder of a base with this source and folder column."""
    if source in (UPLOAD, IMPORT):
        root = settings.uploaded_base_models_dir
    elif settings.base_models_dir is not None:
        root = settings.base_models_dir
    else:
        raise Unavailable(
            "this base model is provided from TRAINSERVE_BASE_MODELS_DIR, which is not set on "
            "this host",
            code="base_model_unavailable",
        )
    path = (root / folder).resolve()
    if not path.is_relative_to(root.resolve()):  # a stored value that escapes: refuse it
        raise Unavailable(f"base model folder {folder!r} is outside its root")
    return path
