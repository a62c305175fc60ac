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
from fastapi.testclient import TestClient

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


def test_predict_bench_bare_endpoint_answers_as_the_raw_model(bench: Importer) -> None:
    predict = bench("predict")
    model = predict.make_model()
    bare = bench("predict_assets.bare_server").make_app(model.state_dict())
    rows = predict.make_rows(3)
    with TestClient(bare) as client:
        body = client.post("/predict", json={"inputs": rows}).json()
    with torch.inference_mode():
        probs = torch.softmax(model(torch.tensor(rows, dtype=torch.float32)), dim=1)
    assert body["predictions"] == probs.argmax(dim=1).tolist()
    assert torch.allclose(torch.tensor(body["probabilities"]), probs, atol=1e-6)


def test_predict_bench_table_has_the_tail_and_the_bare_ratios(
    bench: Importer, capsys: pytest.CaptureFixture[str]
) -> None:
    predict = bench("predict")
    c32 = predict.SCENARIOS[1]
    spread = [i / 1000 for i in range(1, 1001)]  # 1..1000 ms, one each
    bare = predict.Result(predict.BARE, c32, spread, wall_s=1.0)
    ours = predict.Result("trainserve rows=8", c32, [t / 4 for t in spread] * 3, wall_s=1.0)
    assert bare.percentile_ms(99) == pytest.approx(990.01) and bare.percentile_ms(99.9) > 999
    predict.print_table([bare, ours])
    predict.print_targets([bare, ours])
    out = capsys.readouterr().out
    assert "p99.9 ms" in out and "req/s ÷ bare" in out and "p99 ÷ bare" in out
    assert "3.00x" in out and "0.25x" in out  # 3x the requests in the same time, a quarter the p99
    assert "trainserve rows=8: req/s ≥ 1.5x bare's and p99 ≤ 2x bare's" in out and ", met" in out


def test_predict_bench_runs_trainserve_once_per_batch_size_and_skips_absent_peers(
    bench: Importer, tmp_path: Path
) -> None:
    predict = bench("predict")
    labels = [label for label, _ in predict.launchers(["bare", "trainserve"], [1, 64])]
    assert labels == ["bare", "trainserve rows=1", "trainserve rows=64"]
    servers = ["bare", "trainserve", "torchserve", "litserve"]
    assert predict.without_absent_peers(servers, tmp_path / "none") == ["bare", "trainserve"]
