from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Query, Response, UploadFile

from app.api.deps import Id, JobsRead, JobsWrite, SessionDep, SettingsDep
from app.api.openapi import KEYED, errors_for
from app.datasets.parsing import UploadOptions
from app.schemas.dataset import DatasetFormat, DatasetPage, DatasetPublic
from app.schemas.job import TEXT_PATTERN, Task
from app.services import dataset_catalog

router = APIRouter(prefix="/v1/datasets", tags=["datasets"], responses=errors_for(*KEYED))
NO_DATASET = {404: "No dataset with this id in the caller's project (not_found)"}


@router.post(
    "",
    status_code=201,
    response_model=DatasetPublic,
    responses=errors_for(
        503,
        507,
        when={
            409: "The project has a dataset of this name (dataset_exists; details give its "
            "id): delete it or choose another name",
            413: "The file is larger than TRAINSERVE_MAX_UPLOAD_BYTES (payload_too_large)",
            422: "A form field is invalid, or the file is not a dataset of its format: "
            "unreadable, empty, a missing target column, an unsafe path in a zip "
            "(validation_error, invalid_dataset, unsafe_path)",
        },
    ),
)
def upload_dataset(
    session: SessionDep,
    settings: SettingsDep,
    principal: JobsWrite,
    file: Annotated[UploadFile, File(description="The data, in the format named")],
    name: Annotated[
        str,
        Form(
            min_length=1,
            max_length=100,
            pattern=TEXT_PATTERN,
            description="For people; one dataset per name in a project",
        ),
    ],
    dataset_format: Annotated[DatasetFormat, Form(alias="format", description="The file's")],
    target: Annotated[
        str | None,
        Form(max_length=200, pattern=TEXT_PATTERN, description="csv: the label column"),
    ] = None,
    task: Annotated[
        Task | None, Form(description="Default: classification unless the labels are floats")
    ] = None,
    image_size: Annotated[
        int, Form(description="images-zip: each image is resized to this many pixels square")
    ] = 32,
    channels: Annotated[
        int | None, Form(description="images-zip: 1 (grey) or 3 (RGB); default: the images'")
    ] = None,
    impute: Annotated[
        Literal["mean"] | None,
        Form(description="csv: fill missing numbers with the column mean (default: refuse)"),
    ] = None,
) -> DatasetPublic:
    """Upload a dataset (multipart): it is parsed and checked now, stored once as arrays,
    and named in a job spec by its id."""
    options = UploadOptions(target, task, image_size, channels, impute)
    row = dataset_catalog.create_dataset(
        session, settings, principal, name, dataset_format, file.file, options
    )
    return DatasetPublic.model_validate(row)


@router.get("", response_model=DatasetPage)
def list_datasets(
    session: SessionDep,
    principal: JobsRead,
    limit: Annotated[int, Query(ge=1, le=200, description="Datasets per page")] = 50,
    cursor: Annotated[
        str | None, Query(max_length=200, description="next_cursor of the page before")
    ] = None,
) -> DatasetPage:
    """The caller's project's datasets, newest first, a page at a time."""
    items, next_cursor = dataset_catalog.list_datasets(session, limit, cursor, principal.tenant)
    return DatasetPage(
        items=[DatasetPublic.model_validate(d) for d in items], next_cursor=next_cursor
    )


@router.get("/{dataset_id}", response_model=DatasetPublic, responses=errors_for(when=NO_DATASET))
def get_dataset(dataset_id: Id, session: SessionDep, principal: JobsRead) -> DatasetPublic:
    """A dataset: its format, kind, task and schema (features, classes, shape)."""
    return DatasetPublic.model_validate(
        dataset_catalog.get_dataset(session, dataset_id, principal.tenant)
    )


@router.delete(
    "/{dataset_id}",
    status_code=204,
    response_class=Response,
    responses=errors_for(
        when={
            **NO_DATASET,
            409: "A queued or running job uses it (dataset_in_use; details.jobs)",
        }
    ),
)
def delete_dataset(
    dataset_id: Id, session: SessionDep, settings: SettingsDep, principal: JobsWrite
) -> Response:
    """Delete a dataset and its files; the versions trained on it keep their lineage."""
    dataset_catalog.delete_dataset(session, settings, dataset_id, principal.tenant)
    return Response(status_code=204)
