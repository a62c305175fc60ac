"""Training samples/s: the service's training path next to the seed's loop, on MNIST-shaped data.

Rows of the table it prints (bench/README.md says more):
  seed loop (baseline)      the seed document's script: Net (784→128→10), DataLoader(batch_size=64,
                            shuffle=True) over float32 rows, loss.item() every step
  service path (fit)        worker.training.setup.assemble(spec, RawData, device), then
                            worker.training.loop.fit with no-op hooks: uint8 images resident on
                            the device, normalized and flattened per batch, loss summed on device
  service path + hooks      the same, with an on_step that does what Reporter.on_step does each
                            step (count it, compare time.monotonic() with the next heartbeat)
  service path, compiled    CUDA only: the spec's training.compile=True, applied as
                            worker/training/runner.py applies it (torch.compile of the model)

Both sides train on the same pixels: 60,000 synthetic 28x28 uint8 images, 10 classes.
Run from the repository root: .venv/bin/python bench/train_throughput.py [--device auto]
"""

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from app.datasets.raw import RawData
from app.ml.devices import resolve_device
from app.schemas.dataset import DataKind
from app.schemas.job import JobSpec
from worker.training.loop import EpochResult, StepHook, fit
from worker.training.setup import assemble

# isort: split
# bench's own modules: the script's folder is first on sys.path (python bench/train_throughput.py)
from common import BATCH, LR, MOMENTUM, SEED, run_line, seed_spec

SIDE, CLASSES = 28, 10
VALIDATION_SPLIT = 0.01  # small: the seed loop has none, and fit evaluates it every epoch
HEARTBEAT_S = 1.0  # Settings.heartbeat_s default: Reporter renews the lease this often


# --- data ------------------------------------------------------------------------------------


def synthetic_mnist(rows: int, seed: int = SEED) -> RawData:
    """uint8 (rows, 1, 28, 28) images: per class three fixed Gaussian blobs, each image at its own
    brightness, plus pixel noise. Learnable (loss falls well below ln 10) but not at once."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIDE, 0:SIDE].astype(np.float32)
    centers = rng.uniform(5, SIDE - 5, size=(CLASSES, 3, 2)).astype(np.float32)
    d2 = (yy - centers[..., 0, None, None]) ** 2 + (xx - centers[..., 1, None, None]) ** 2
    protos = np.exp(-d2 / (2 * 3.0**2)).sum(axis=1).clip(0, 1)  # (10, 28, 28) in [0, 1]
    y = rng.integers(0, CLASSES, rows)
    x = np.empty((rows, 1, SIDE, SIDE), dtype=np.uint8)
    for start in range(0, rows, 10_000):  # in chunks: float32 temporaries stay ~30 MB
        ys = y[start : start + 10_000]
        bright = rng.uniform(20, 140, size=(len(ys), 1, 1)).astype(np.float32)
        noise = rng.normal(0, 100, size=(len(ys), SIDE, SIDE)).astype(np.float32)
        x[start : start + 10_000, 0] = (protos[ys] * bright + 30 + noise).clip(0, 255)
    return RawData(DataKind.image, y.astype(np.int64), list(range(CLASSES)), x=x)


def service_spec(epochs: int, compile_model: bool = False) -> JobSpec:
    """The seed job on MNIST: mlp [128], SGD lr 0.01 momentum 0.9, batch 64. The builtin name is
    only there to make a valid spec: the bench passes its RawData to assemble() itself."""
    spec = seed_spec("bench-throughput", epochs, VALIDATION_SPLIT, compile=compile_model)
    return JobSpec.model_validate(spec)


@dataclass(frozen=True)
class SeedRows:
    x: torch.Tensor  # (n, 784) float32 on the CPU, as the seed's DataLoader serves them
    y: torch.Tensor  # (n,) int64


def seed_rows(raw: RawData) -> SeedRows:
    """The service's training rows, turned into what the seed's script trains on: pixels / 255,
    normalized with the same channel statistics, flattened to 784 features."""
    data = assemble(service_spec(1), raw, torch.device("cpu")).data
    stats = data.preprocessor.channels
    assert stats is not None
    x = (data.x_train.float() / 255.0 - stats.mean.view(1, -1, 1, 1)) / stats.std.view(1, -1, 1, 1)
    return SeedRows(x.flatten(1).contiguous(), data.y_train)


# --- the seed's own loop, in the seed's style ------------------------------------------------


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(x)))


@dataclass(frozen=True)
class Run:
    wall_s: float  # the timed epochs, after one untimed warm-up epoch
    train_loss: float  # mean training loss of the last epoch


def seed_loop(rows: SeedRows, epochs: int, device: torch.device) -> Run:
    torch.manual_seed(SEED)
    model = Net().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    loss_fn = nn.CrossEntropyLoss()
    loader = DataLoader(TensorDataset(rows.x, rows.y), batch_size=BATCH, shuffle=True)

    def train_epoch() -> float:
        model.train()
        running = 0.0
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            optimizer.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()
            running += loss.item()  # a GPU sync every step
        return running / len(loader)

    train_epoch()  # warm-up
    began = time.perf_counter()
    loss = float("nan")
    for _ in range(epochs):
        loss = train_epoch()
    return Run(time.perf_counter() - began, loss)


# --- the service's training path, in this process --------------------------------------------


class HeartbeatCheck:
    """Reporter.on_step without its database: count the step, read the clock, compare."""

    def __init__(self) -> None:
        self.step = 0
        self._next_beat = time.monotonic() + HEARTBEAT_S

    def on_step(self, _rows: int) -> bool:
        self.step += 1
        if time.monotonic() >= self._next_beat:
            # Reporter commits a heartbeat here, about once a second; not timed in this bench.
            self._next_beat = time.monotonic() + HEARTBEAT_S
        return False


def no_op_step(_rows: int) -> bool:
    return False


def service_path(
    raw: RawData,
    epochs: int,
    device: torch.device,
    on_step: Callable[[], StepHook] = lambda: no_op_step,
    compile_model: bool = False,
) -> Run:
    """assemble() then fit(), as worker/training/runner.py runs them, minus checkpoints and DB."""
    run = assemble(service_spec(1 + epochs, compile_model), raw, device)
    # As runner._maybe_compile: the compiled wrapper shares the model's parameters.
    model = torch.compile(run.model) if compile_model else run.model
    losses: list[float] = []

    def on_epoch_end(result: EpochResult) -> None:
        losses.append(result.metrics["train_loss"])

    def train(opts_epochs: int, start_epoch: int) -> None:
        fit(
            model,
            run.optimizer,
            run.loss_fn,
            run.splits,
            replace(run.opts, epochs=opts_epochs),
            run.generator,
            on_step=on_step(),
            on_epoch_end=on_epoch_end,
            start_epoch=start_epoch,
        )

    train(1, 0)  # warm-up epoch (with compile: the compilation)
    _sync(device)
    began = time.perf_counter()
    train(1 + epochs, 1)  # fit reads the epoch's loss with .item(), so the work is done here
    _sync(device)
    return Run(time.perf_counter() - began, losses[-1])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --- report ----------------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    loop: Callable[[], Run]
    runs: list[Run]
    error: str | None = None

    def repeat(self) -> None:
        if self.error is not None:
            return
        try:
            self.runs.append(self.loop())
        except Exception as exc:  # the compiled row only: report it and carry on
            if not self.name.endswith("compiled"):
                raise
            self.error = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]


def print_table(rows: list[Row], epochs: int, samples: int) -> None:
    """The first row is the baseline of the ratio column."""
    base = statistics.median(r.wall_s for r in rows[0].runs)
    print(f"{'':32} {'epochs':>6} {'wall s':>8} {'samples/s':>10} {'÷ seed':>7} {'train loss':>11}")
    for row in rows:
        if row.error is not None:
            print(f"{row.name:32} failed: {row.error}")
            continue
        wall = statistics.median(r.wall_s for r in row.runs)
        loss = row.runs[-1].train_loss
        print(
            f"{row.name:32} {epochs:6d} {wall:8.3f} {samples / wall:10.0f} "
            f"{base / wall:6.2f}x {loss:11.4f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--epochs", type=int, default=1, help="timed epochs per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each row; medians")
    parser.add_argument("--rows", type=int, default=60_000, help="synthetic images (60,000)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (torch's default)")
    args = parser.parse_args()
    if min(args.epochs, args.repeats) < 1 or args.rows < 1000:
        parser.error("--epochs and --repeats must be at least 1, --rows at least 1000")
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be at least 1")
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    where = f"cuda ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "cpu"
    print(
        f"torch {torch.__version__}, Python {platform.python_version()}, device {where}, "
        f"threads {torch.get_num_threads()}, cpus {os.cpu_count()}; mlp [128], sgd lr {LR} "
        f"momentum {MOMENTUM}, batch {BATCH}, {args.epochs} timed epoch(s) after 1 warm-up, "
        f"{args.repeats} repeats (medians)"
    )

    raw = synthetic_mnist(args.rows)
    seed_data = seed_rows(raw)
    train_rows = seed_data.x.shape[0]
    began = time.perf_counter()
    assemble(service_spec(1), raw, device)
    _sync(device)
    assemble_s = time.perf_counter() - began

    rows = [
        Row("seed loop (baseline)", lambda: seed_loop(seed_data, args.epochs, device), []),
        Row("service path (fit)", lambda: service_path(raw, args.epochs, device), []),
        Row(
            "service path + hooks",
            lambda: service_path(raw, args.epochs, device, lambda: HeartbeatCheck().on_step),
            [],
        ),
    ]
    if device.type == "cuda":
        rows.append(
            Row(
                "service path, compiled",
                lambda: service_path(raw, args.epochs, device, compile_model=True),
                [],
            )
        )
    for _ in range(args.repeats):  # interleaved, so a noisy spell hits every row alike
        for row in rows:
            row.repeat()

    samples = train_rows * args.epochs
    print(
        f"{args.rows} images 1x{SIDE}x{SIDE} uint8, {CLASSES} classes; train rows {train_rows} "
        f"(validation_split {VALIDATION_SPLIT}) x {args.epochs} epoch(s) = {samples} samples\n"
    )
    print_table(rows, args.epochs, samples)
    if device.type != "cuda":
        print("service path, compiled: not run (training.compile applies on CUDA only)")
    print(f"\nassemble() (split, channel stats, to {device.type}), untimed: {assemble_s:.3f} s")
    print("train loss: mean over the last timed epoch (an untrained model is at ln 10 = 2.30)")
    print("each run, wall s:")
    for row in rows:
        print(run_line(row.name, (r.wall_s for r in row.runs), 30))


if __name__ == "__main__":
    main()
