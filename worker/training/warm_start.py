"""A warm start's parent: the registered version a job's `init` names, loaded as predict
loads it (from the store, checked against its recorded sha256), whose weights and
preprocessing the job continues from. Its fit was checked at submission; a parent deleted
since fails the job."""

from app.base_models.location import folder_finder
from app.core.config import Settings
from app.core.db import session_scope
from app.ml.bundle import ModelBundle, load_bundle
from app.schemas.job import JobSpec
from app.services import registry
from app.storage import StoreError, StoreUnavailable, store_for


def load_parent(spec: JobSpec, project: str, settings: Settings) -> ModelBundle | None:
    if spec.init is None:
        return None
    assert spec.init.version is not None  # pinned at submission
    with session_scope() as session:
        row = registry.get_version(session, project, spec.init.model, spec.init.version)
        key, sha256 = row.checkpoint_path, row.checkpoint_sha256
    try:
        path = store_for(settings).fetch(key, sha256)
    except StoreUnavailable:
        raise  # tried again later
    except StoreError as exc:
        raise ValueError(
            f"init: {spec.init.model} version {spec.init.version} cannot be read: {exc}"
        ) from exc
    return load_bundle(path, "cpu", folder_finder(settings))
