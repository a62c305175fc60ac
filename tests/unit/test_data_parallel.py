"""Data parallel without processes: the spec's devices and strategy, the global batch's split
(a 422 naming batch_size), and each rank's shard of an epoch's order."""

import pytest
import torch
from pydantic import ValidationError
from sqlalchemy.orm import Session

from app.core.config import Settings
from app.core.errors import Unprocessable
from app.schemas.job import JobSpec
from app.services.jobs import validate_spec
from worker.training.ranks import shard_rows


def spec(**training: object) -> JobSpec:
    return JobSpec.model_validate(
        {"model_name": "m", "dataset": {"builtin": "digits"}, "training": training}
    )


def test_one_device_and_ddp_by_default_and_only_ddp() -> None:
    assert (spec().training.devices, spec().training.strategy) == (1, "ddp")
    with pytest.raises(ValidationError, match="Input should be 'ddp'"):
        spec(devices=2, strategy="fsdp")
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        spec(devices=0)


def test_a_batch_that_does_not_split_evenly_is_refused_naming_batch_size() -> None:
    with pytest.raises(Unprocessable) as refused:
        # no query runs before this check: a session bound to no database is enough
        validate_spec(Session(), spec(devices=3, batch_size=64), Settings())
    assert str(refused.value) == (
        "training.batch_size: is the global batch, split evenly across training.devices=3: "
        "64 is not a multiple of 3 (e.g. 63 or 66)"
    )
    assert refused.value.details[0]["field"] == "training.batch_size"
    with pytest.raises(Unprocessable, match=r"1 is not a multiple of 2 \(e.g. 2\)"):
        validate_spec(Session(), spec(devices=2, batch_size=1), Settings())


@pytest.mark.parametrize(("rows", "world", "per_step"), [(10, 2, 4), (11, 2, 4), (7, 4, 8)])
def test_each_step_of_the_ranks_is_the_single_process_step(
    rows: int, world: int, per_step: int
) -> None:
    order = torch.randperm(rows, generator=torch.Generator().manual_seed(0))
    shards = [shard_rows(order, rank, world, per_step) for rank in range(world)]
    assert len({len(s) for s in shards}) == 1  # as many rows, so as many steps, on each rank
    padded = torch.cat([order, order[: (-rows) % world]])
    mine = per_step // world
    for step, first in enumerate(range(0, padded.shape[0], per_step)):
        global_batch = padded[first : first + per_step]
        pieces = [s[step * mine : (step + 1) * mine] for s in shards]
        assert torch.equal(torch.cat(pieces), global_batch)
