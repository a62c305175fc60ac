"""A warm start's parent: the registered version a job's `init` names, loaded as predict
loads it (checked against its recorded sha256), whose weights and preprocessing the job
continues from. Its fit was checked at submission; a parent deleted since fails the job."""

from app.base_models.location import folder_finder
from app.core.config import Settings
from app.core.db import session_scope
from app.core.files import sha256_file
from app.ml.bundle import ModelBundle, load_bundle
from app.schemas.job import JobSpec
from app.services import registry


def load_parent(spec: JobSpec, project: str, settings: Settings) -> ModelBundle | None:
    if spec.init is None:
        return None
    assert spec.init.version is not None  # pinned at submission
    with session_scope() as session:
        row = registry.get_version(session, project, spec.init.model, spec.init.version)
        path, sha256 = settings.artifacts_dir / row.checkpoint_path, row.checkpoint_sha256
    if sha256_file(path) != sha256:
        raise ValueError(f"init: {spec.init.model} version {spec.init.version} was altered")
    return load_bundle(path, "cpu", folder_finder(settings))
