"""The benchmarks call the service's internals (fit, assemble, the model zoo) directly, so a
change there can break them without any other test noticing: seed_job.py stopped running
once for exactly that reason. This runs each in-process path once, on small data."""

import importlib
import math
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "bench"


Importer = Callable[[str], ModuleType]


@pytest.fixture(scope="module")
def bench() -> Iterator[Importer]:
    """The bench folder as its scripts see it: their own folder first on sys.path."""
    sys.path.insert(0, str(BENCH))
    try:
        yield importlib.import_module
    finally:
        sys.path.remove(str(BENCH))


def test_seed_job_loops_train_the_digits(bench: Importer) -> None:
    seed_job = bench("seed_job")
    data = seed_job.load_digits()
    for loop in (seed_job.seed_loop, seed_job.service_loop):
        model = loop(data, 2)
        assert seed_job.accuracy(model, data.x_val, data.y_val) > 0.5  # 10 classes: chance is 0.1


def test_train_throughput_paths_run_and_learn(bench: Importer) -> None:
    tt = bench("train_throughput")
    raw = tt.synthetic_mnist(640)
    cpu = torch.device("cpu")
    for run in (tt.seed_loop(tt.seed_rows(raw), 1, cpu), tt.service_path(raw, 1, cpu)):
        assert run.wall_s > 0 and math.isfinite(run.train_loss)
        assert run.train_loss < math.log(10)  # below an untrained model's loss


def test_predict_bench_builds_its_model_and_requests(bench: Importer) -> None:
    predict = bench("predict")
    model = predict.make_model()
    rows = predict.make_rows(3)
    assert len(rows) == 3 and len(rows[0]) == predict.FEATURES
    assert model(torch.tensor(rows, dtype=torch.float32)).shape == (3, predict.CLASSES)
    assert callable(bench("loadgen").closed_loop)
