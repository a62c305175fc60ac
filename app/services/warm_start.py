"""Checks of a warm start (spec `init`) against the version it starts from: it exists in the
caller's project, and its network, task, classes and input fit the new job exactly, since the
job continues from its weights and its preprocessing. Refused at submission with a 422 naming
`init`; the job keeps the version number (an alias may move; a number never changes meaning)."""

from typing import Any

from sqlalchemy.orm import Session

from app.core.errors import NotFound, invalid_field
from app.core.kinds import Arch
from app.ml.zoo import arch_options
from app.models import ModelVersion
from app.schemas.dataset import DataKind
from app.schemas.job import JobSpec
from app.services import registry
from app.services.dataset_catalog import DatasetInfo

# What must be equal between parent and child for a pretrained network to carry over.
PRETRAINED_FIELDS = ("base", "head")


def check_init(session: Session, spec: JobSpec, info: DatasetInfo, project: str) -> JobSpec:
    """Every check; returns the spec with init pinned to a version number."""
    init = spec.init
    assert init is not None
    ref = str(init.version) if init.version is not None else init.alias
    try:
        parent = registry.resolve(session, project, init.model, ref)
    except NotFound as exc:
        raise invalid_field("init", exc.message) from exc
    _check_network(spec, parent)
    _check_data(spec, parent, info)
    pinned = init.model_copy(update={"version": parent.version, "alias": None})
    return spec.model_copy(update={"init": pinned})


def _check_network(spec: JobSpec, parent: ModelVersion) -> None:
    theirs: dict[str, Any] = parent.spec.get("model", {})
    if theirs.get("arch") != spec.model.arch:
        raise _misfit(f"it is a {theirs.get('arch')} model and this job asks for {spec.model.arch}")
    if spec.model.arch == Arch.pretrained:
        ours = spec.model.model_dump(mode="json")
        for field in PRETRAINED_FIELDS:
            if theirs.get(field) != ours.get(field):
                raise _misfit(
                    f"its model.{field} is {theirs.get(field)!r}, not {ours.get(field)!r}"
                )
        return
    mine, its = arch_options(spec.model.model_dump()), arch_options(theirs)
    for field, value in mine.items():
        if its.get(field) != value:
            raise _misfit(f"its model.{field} is {its.get(field)!r}, not {value!r}")


def _check_data(spec: JobSpec, parent: ModelVersion, info: DatasetInfo) -> None:
    task = spec.model.task or info.task
    if parent.task != task:
        raise _misfit(f"it does {parent.task} and this job {task}")
    if parent.classes != info.classes:
        raise _misfit(f"it knows the classes {parent.classes}; the dataset has {info.classes}")
    if info.kind == DataKind.text:
        if parent.input_shape != [spec.model.max_len]:
            raise _misfit(f"it reads {parent.input_shape[0]} tokens; set model.max_len to it")
    elif parent.input_shape != info.input_shape:
        raise _misfit(
            f"it takes inputs of shape {parent.input_shape}, the dataset {info.input_shape}"
        )


def _misfit(why: str) -> Exception:
    return invalid_field("init", f"the version does not fit this job: {why}")
