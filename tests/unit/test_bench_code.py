"""The benchmarks call the service's internals (fit, assemble, the model zoo) directly, so a
change there can break them without any other test noticing: seed_job.py stopped running
once for exactly that reason. This runs each in-process path once, on small data."""

import importlib
import math
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import pytest
import torch
from fastapi.testclient import TestClient
from safetensors.torch import save_file
from transformers import AutoTokenizer

from tests.hf_models import tiny_bert

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


def test_ddp_bench_compares_jobs_that_differ_in_devices_only(bench: Importer) -> None:
    ddp = bench("ddp")
    one, two = ddp.ddp_spec("a", 2, 1), ddp.ddp_spec("a", 2, 2)
    assert two["training"].pop("devices") == 2 and one["training"].pop("devices") == 1
    assert one == two


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


@pytest.fixture(scope="module")
def bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_bert(tmp_path_factory.mktemp("bert"))


def parameter_counts(model: torch.nn.Module) -> tuple[int, int]:
    """(every weight, the weights that train)."""
    params = list(model.parameters())
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


@pytest.mark.parametrize("finetune", ["full", "lora"])
def test_finetune_bench_plain_and_service_loops_train_the_same_network(
    bench: Importer, bert: Path, finetune: str
) -> None:
    ft = bench("finetune")
    texts, labels = ft.sentences(2 * ft.BATCH)
    plain, service = (make(bert, finetune, texts, labels) for make in ft.LOOPS.values())
    total, trained = parameter_counts(plain.model)
    assert parameter_counts(service.model) == (total, trained)
    assert (trained == total) == (finetune == "full")  # LoRA: the adapters and the head only
    head = service.model.head.weight.detach().clone()
    for loop in (plain, service):
        loop.steps(1)
    assert math.isfinite(plain.last_loss) and not torch.equal(head, service.model.head.weight)


def test_finetune_bench_sentences_are_short_and_balanced(bench: Importer) -> None:
    ft = bench("finetune")
    texts, labels = ft.sentences(320)
    assert len(set(texts)) > 200 and sum(labels) == 160
    assert all(4 <= len(t.split()) <= 12 for t in texts)
    assert texts == ft.sentences(320)[0]  # seeded


def test_finetune_bench_defaults_make_a_short_run(bench: Importer) -> None:
    ft = bench("finetune")
    args = ft.parse_args([])
    assert args.sections == ["finetune", "predict", "generate"]
    assert args.finetune == ["full", "lora"] and args.new_tokens == 128
    assert (args.threads, args.rows, args.warmup_steps) == (1, 320, 2)
    assert (args.steps, args.rounds) == (5, 4)  # 20 timed steps a loop, in alternating rounds
    assert (args.concurrency, args.seconds, args.warmup) == ([1, 16], 10, 2)
    assert ft.parse_args(["--sections", "predict", "--concurrency", "4"]).concurrency == [4]
    with pytest.raises(SystemExit):
        ft.parse_args(["--sections", "serve"])


def test_finetune_bench_naive_endpoint_serves_the_versions_head(
    bench: Importer, bert: Path, tmp_path: Path
) -> None:
    naive = bench("predict_assets.naive_hf_server")
    torch.manual_seed(0)
    head = torch.nn.Linear(32, 2)
    checkpoint = tmp_path / "model.safetensors"
    save_file(
        {"model.head.weight": head.weight.detach(), "model.head.bias": head.bias.detach()},
        checkpoint,
    )
    texts = ["good film", "the plot was awful"]
    with TestClient(naive.make_app(bert, checkpoint, ["neg", "pos"], 16)) as client:
        body = client.post("/predict", json={"inputs": texts}).json()
    model = naive.load_classifier(bert, checkpoint, 2)
    assert torch.equal(model.head.weight, head.weight)
    enc = AutoTokenizer.from_pretrained(bert)(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        probs = torch.softmax(model(enc["input_ids"], enc["attention_mask"]), dim=1)
    assert body["predictions"] == [["neg", "pos"][i] for i in probs.argmax(dim=1).tolist()]
    assert torch.allclose(torch.tensor(body["probabilities"]), probs, atol=1e-6)


def test_finetune_bench_predict_table_has_the_naive_ratios(
    bench: Importer, capsys: pytest.CaptureFixture[str]
) -> None:
    ft, predict = bench("finetune"), bench("predict")
    c16 = predict.Scenario("c16", "1 row, c=16", 1, 16)
    spread = [i / 1000 for i in range(1, 1001)]
    naive = predict.Result(ft.NAIVE, c16, spread, wall_s=1.0)
    ours = predict.Result("trainserve", c16, [t / 2 for t in spread] * 2, wall_s=1.0)
    ft.print_predict_table([naive, ours], [c16])
    out = capsys.readouterr().out
    assert "req/s ÷ naive" in out and "p99 ÷ naive" in out
    assert "2.00x" in out and "0.50x" in out  # twice the requests in the same time, half the p99


def test_both_generation_loops_make_the_tokens_asked_for(
    bench: Importer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = bench("finetune_generate")
    monkeypatch.setattr(module, "GPT2_CONFIG", {"n_embd": 16, "n_layer": 1, "n_head": 2})
    monkeypatch.setattr(module, "VOCABULARY", 64)
    model, tokenizer = module.build(tmp_path / "gpt2")
    assert model.config.vocab_size == 64
    for loop in (module.plain, module.service):
        assert loop(model, tokenizer, 7, 0) == 7  # min_new_tokens: never stopped early


def test_scale_bench_times_the_local_stores_and_prints_every_ratio(
    bench: Importer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scale = bench("scale")
    rows = scale.transfers(2 * scale.MiB, tmp_path, None, repeats=1)
    assert [(r.store, r.op) for r in rows] == [
        ("copyfile + sha256", "copy"),
        ("LocalStore", "put"),
        ("LocalStore", "fetch"),
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["local"]  # the file and blob removed
    scale.print_storage(rows)
    assert "1.00x" in capsys.readouterr().out


def test_scale_bench_jobs_arithmetic(bench: Importer, capsys: pytest.CaptureFixture[str]) -> None:
    scale = bench("scale")
    t0 = datetime(2026, 1, 1, tzinfo=UTC)

    def job(started_s: float, finished_s: float) -> object:
        at = [t0 + timedelta(seconds=s) for s in (0, started_s, finished_s)]
        return scale.JobTimes(*at, loop_s=0.5)

    one = scale.Run("one worker", 1, [job(1, 3), job(3, 6)])
    two = scale.Run("two workers", 2, [job(1, 3), job(1, 3)])
    assert (one.wall_s, one.per_minute, one.slot_s) == (6, 20, 3)
    assert (two.wall_s, two.per_minute, two.slot_s) == (3, 40, 3)
    scale.print_jobs([one, two], one)
    out = capsys.readouterr().out
    assert "2.00x" in out and "5.00x" in out  # twice the jobs a minute; overhead 2.5 s = 5x loop
    assert scale.parse_args([]).sections == ["jobs", "predict", "storage"]
