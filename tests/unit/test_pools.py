"""Which queue a pool is: the default pool keeps the settings' queue, so `trainserve up` and
deployments from before pools see no change; a named pool gets a queue of its own."""

import pytest
from click.testing import CliRunner

from app.cli import main, worker_command
from app.core.pools import pool_key, pool_label, queue_for


def test_the_default_pool_keeps_the_queue_and_a_named_pool_has_its_own() -> None:
    assert queue_for("trainserve", None) == "trainserve"
    assert queue_for("trainserve", "default") == "trainserve"
    assert queue_for("trainserve", "h200") == "trainserve.pool.h200"
    assert pool_key("default") is None and pool_key("gpu") == "gpu"
    assert pool_label(None) == "default" and pool_label("gpu") == "gpu"


def test_the_worker_command_consumes_its_pools_queue() -> None:
    command = worker_command(2, "trainserve.pool.gpu")
    assert command[command.index("--queues") + 1] == "trainserve.pool.gpu"
    assert "--queues" not in worker_command()  # up's workers: the app's default queue


@pytest.mark.parametrize(
    ("args", "hint"), [(["--pool", "a b"], "--pool"), (["--gpus", "0;1"], "--gpus")]
)
def test_worker_refuses_a_bad_pool_or_gpu_list(args: list[str], hint: str) -> None:
    result = CliRunner().invoke(main, ["worker", *args])
    assert result.exit_code == 2 and hint in result.output
