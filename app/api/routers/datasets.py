from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Query, Response, UploadFile

from app.api.deps import Id, JobsRead, JobsWrite, SessionDep, SettingsDep
from app.datasets.parsing import UploadOptions
from app.schemas.dataset import DatasetFormat, DatasetPage, DatasetPublic
from app.schemas.job import TEXT_PATTERN, Task
from app.services import dataset_catalog

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])


@router.post("", status_code=201, response_model=DatasetPublic)
def upload_dataset(
    session: SessionDep,
    settings: SettingsDep,
    principal: JobsWrite,
    file: Annotated[UploadFile, File()],
    name: Annotated[str, Form(min_length=1, max_length=100, pattern=TEXT_PATTERN)],
    dataset_format: Annotated[DatasetFormat, Form(alias="format")],
    target: Annotated[str | None, Form(max_length=200, pattern=TEXT_PATTERN)] = None,
    task: Annotated[Task | None, Form()] = None,
    image_size: Annotated[int, Form()] = 32,
    channels: Annotated[int | None, Form()] = None,
    impute: Annotated[Literal["mean"] | None, Form()] = None,
) -> DatasetPublic:
    options = UploadOptions(target, task, image_size, channels, impute)
    row = dataset_catalog.create_dataset(
        session, settings, principal, name, dataset_format, file.file, options
    )
    return DatasetPublic.model_validate(row)


@router.get("", response_model=DatasetPage)
def list_datasets(
    session: SessionDep,
    principal: JobsRead,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> DatasetPage:
    items, next_cursor = dataset_catalog.list_datasets(session, limit, cursor, principal.tenant)
    return DatasetPage(
        items=[DatasetPublic.model_validate(d) for d in items], next_cursor=next_cursor
    )


@router.get("/{dataset_id}", response_model=DatasetPublic)
def get_dataset(dataset_id: Id, session: SessionDep, principal: JobsRead) -> DatasetPublic:
    return DatasetPublic.model_validate(
        dataset_catalog.get_dataset(session, dataset_id, principal.tenant)
    )


@router.delete("/{dataset_id}", status_code=204, response_class=Response)
def delete_dataset(
    dataset_id: Id, session: SessionDep, settings: SettingsDep, principal: JobsWrite
) -> Response:
    dataset_catalog.delete_dataset(session, settings, dataset_id, principal.tenant)
    return Response(status_code=204)
