"""Fine-tuning vision bases on tiny real Hugging Face models (a ViT and a ResNet built from
configs, saved with save_pretrained): the base's own image processor settings, resizing and
normalizing per batch, which weights each mode trains, a frozen backbone's BatchNorm, and that
a stored version answers as it did."""

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from app.core.kinds import Task
from app.ml import pretrained
from app.ml.footprint import pretrained_vision
from app.ml.images import IMAGENET_MEAN, IMAGENET_STD, BaseImageStats
from app.ml.preprocessing import Preprocessor
from tests.hf_models import tiny_resnet, tiny_vit
from tests.unit.test_footprint import CreatedBytes
from worker.training.loop import LoopOptions, Scoring, Splits, fit

HEAD = {"head.weight", "head.bias"}


@pytest.fixture(scope="module")
def vit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_vit(tmp_path_factory.mktemp("vit"))


@pytest.fixture(scope="module")
def resnet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_resnet(tmp_path_factory.mktemp("resnet"))


def options(finetune: str, dropout: float = 0.0) -> dict[str, Any]:
    return {
        "base": {"id": "b", "sha256": "", "source": "upload", "folder": "b/model"},
        "family": "vision",
        "head": "classification",
        "finetune": finetune,
        "lora": {"r": 4, "alpha": 8.0, "dropout": 0.0},
        "dropout": dropout,
    }


def images(n: int = 32, side: int = 20, channels: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Bright and dark squares: uint8 (n, C, side, side), labels 1 and 0."""
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 2
    x = torch.randint(0, 80, (n, channels, side, side), generator=gen, dtype=torch.uint8)
    x[y == 1] += 150
    return x, y


def train(model: nn.Module, pre: Preprocessor, x: torch.Tensor, y: torch.Tensor) -> None:
    trained = [p for p in model.parameters() if p.requires_grad]
    opts = LoopOptions(
        Scoring(Task.classification, [0, 1]), 2, batch_size=8, transform=lambda b, _t: pre.batch(b)
    )
    fit(
        model,
        torch.optim.AdamW(trained, lr=0.01),
        nn.CrossEntropyLoss(),
        Splits(x, y, x[:8], y[:8]),
        opts,
        torch.Generator().manual_seed(0),
        on_step=lambda rows: False,
        on_epoch_end=lambda result: None,
    )


def test_the_base_processor_config_gives_size_mean_and_std(vit: Path, resnet: Path) -> None:
    assert pretrained.image_stats(vit) == BaseImageStats((16, 16), 3, (0.5,) * 3, (0.5,) * 3)
    # ResNet's processor (ConvNeXt's) gives a shortest edge; no crop without crop_pct
    assert pretrained.image_stats(resnet) == BaseImageStats(
        (12, 12), 3, IMAGENET_MEAN, IMAGENET_STD
    )


def test_other_processor_configs_and_none(vit: Path, tmp_path: Path) -> None:
    folder = tmp_path / "vit"
    shutil.copytree(vit, folder)
    (folder / "preprocessor_config.json").unlink()
    assert pretrained.image_stats(folder) == BaseImageStats(
        (16, 16), 3, IMAGENET_MEAN, IMAGENET_STD
    )  # the config's image_size, and ImageNet's statistics
    written = {
        "size": {"shortest_edge": 20},
        "do_center_crop": True,
        "crop_size": {"height": 16, "width": 16},
        "image_mean": [0.4, 0.5, 0.6],
        "image_std": [0.2, 0.3, 0.4],
        "do_rescale": False,
    }
    (folder / "image_processor_config.json").write_text(json.dumps(written))
    stats = pretrained.image_stats(folder)
    assert (stats.size, stats.mean, stats.std, stats.rescale) == (
        (16, 16),
        (0.4, 0.5, 0.6),
        (0.2, 0.3, 0.4),
        1.0,
    )


def test_resize_and_normalize_match_a_hand_computation() -> None:
    # 2x2 → 1x1: the output pixel's center lies between all four, which weigh the same.
    stats = BaseImageStats((1, 1), 3, (0.5,), (0.25,))
    gray = torch.tensor([[[[0, 100], [200, 255]]]], dtype=torch.uint8)  # (1, 1, 2, 2)
    expected = ((0 + 100 + 200 + 255) / 4 / 255 - 0.5) / 0.25
    out = stats(gray)
    assert out.shape == (1, 3, 1, 1)  # grayscale repeated for an RGB base
    assert torch.allclose(out, torch.full((1, 3, 1, 1), expected), atol=1e-6)
    # A constant image stays constant through any resize: each channel by its own mean/std.
    rgb = torch.tensor([10, 128, 250], dtype=torch.uint8).view(1, 3, 1, 1).expand(2, 3, 5, 5)
    out = BaseImageStats((3, 4), 3, IMAGENET_MEAN, IMAGENET_STD)(rgb)
    assert out.shape == (2, 3, 3, 4)
    for c, value in enumerate((10, 128, 250)):
        hand = (value / 255 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
        assert torch.allclose(out[:, c], torch.full((2, 3, 4), hand), atol=1e-5)
    unscaled = BaseImageStats((5, 5), 3, (0.0,), (1.0,), rescale=1.0, normalize=False)
    assert torch.equal(unscaled(rgb), rgb.float())  # the right size already: untouched


def test_the_stats_are_stored_in_the_meta_and_load_back(vit: Path) -> None:
    x, _ = images(4, side=20, channels=1)
    pre = Preprocessor.fit_base_image(vit, x)
    meta = pre.meta()
    assert meta["base_image"]["size"] == [16, 16] and meta["input_shape"] == [1, 20, 20]
    assert pre.tensors() == {}  # no statistics fitted on the data
    again = Preprocessor.load(json.loads(json.dumps(meta)), {})
    assert again.channels is None and again.base_image == pre.base_image
    assert torch.equal(again.batch(x), pre.batch(x)) and pre.batch(x).shape == (4, 3, 16, 16)


@pytest.mark.parametrize(
    ("base", "finetune", "trains_base"),
    [
        ("vit", "full", True),
        ("vit", "head", False),
        ("vit", "lora", False),
        ("resnet", "full", True),
        ("resnet", "head", False),
    ],
)
def test_each_mode_trains_what_it_says_and_a_stored_version_answers_the_same(
    base: str, finetune: str, trains_base: bool, request: pytest.FixtureRequest
) -> None:
    folder: Path = request.getfixturevalue(base)
    x, y = images()
    pre = Preprocessor.fit_base_image(folder, x)
    torch.manual_seed(0)
    model = pretrained.build_finetune(folder, 2, options(finetune, dropout=0.1))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trained = pretrained.trainable_names(model)
    train(model, pre, x, y)
    after = model.state_dict()
    changed = {k for k in after if not torch.equal(before[k], after[k])}
    assert changed >= HEAD
    base_weights = {k for k, _ in model.named_parameters() if k not in HEAD and "lora_" not in k}
    assert bool(base_weights & changed) == trains_base
    if finetune == "lora":
        adapters = {k for k in trained if "lora_" in k}
        # r x (in + out) for the query and value projections of 2 layers of width 32
        assert trained == adapters | HEAD
        assert (
            sum(p.numel() for n, p in model.named_parameters() if n in adapters) == 2 * 2 * 4 * 64
        )

    stored = pretrained.stored_tensors(model)
    model.eval()
    loaded = pretrained.load_finetuned(folder, 2, options(finetune, dropout=0.1), stored).eval()
    batch = pre.batch(x[:6])
    with torch.no_grad():
        assert torch.allclose(model(batch), loaded(batch), atol=1e-5)


def test_a_vit_without_pooler_weights_pools_its_class_token_on_every_load(vit: Path) -> None:
    model = pretrained.build_finetune(vit, 2, options("head"))
    assert not any(k.startswith("backbone.pooler") for k in model.state_dict())
    again = pretrained.build_finetune(vit, 2, options("head"))
    backbone = {k: v for k, v in model.state_dict().items() if not k.startswith("head.")}
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in backbone.items())


def test_a_base_missing_weights_is_refused_but_not_for_batchnorm_step_counts(
    vit: Path, resnet: Path, tmp_path: Path
) -> None:
    from safetensors.torch import load_file, save_file

    def without(folder: Path, drop: str) -> Path:
        copy = tmp_path / folder.name
        shutil.copytree(folder, copy)
        weights = load_file(copy / "model.safetensors")
        kept = {k: v for k, v in weights.items() if not k.endswith(drop)}
        assert len(kept) < len(weights)
        save_file(kept, copy / "model.safetensors", metadata={"format": "pt"})
        return copy

    with pytest.raises(ValueError, match="lack"):
        pretrained.build_finetune(without(vit, "layernorm.weight"), 2, options("full"))
    pretrained.build_finetune(without(resnet, "num_batches_tracked"), 2, options("full"))


def test_head_mode_leaves_a_frozen_resnets_batchnorm_statistics_as_pretrained(
    resnet: Path,
) -> None:
    x, y = images()
    pre = Preprocessor.fit_base_image(resnet, x)

    def statistics(model: nn.Module) -> dict[str, torch.Tensor]:
        keep = ("running_mean", "running_var")
        return {k: v.clone() for k, v in model.state_dict().items() if k.endswith(keep)}

    frozen = pretrained.build_finetune(resnet, 2, options("head"))
    pretrained_stats = statistics(frozen)
    assert pretrained_stats
    train(frozen, pre, x, y)  # training steps, then the loop's precise-BN pass
    assert all(torch.equal(v, statistics(frozen)[k]) for k, v in pretrained_stats.items())
    full = pretrained.build_finetune(resnet, 2, options("full"))
    train(full, pre, x, y)  # a backbone that trains has its statistics recomputed
    assert all(not torch.equal(v, statistics(full)[k]) for k, v in pretrained_stats.items())


def test_lora_on_a_conv_base_is_refused_when_built(resnet: Path) -> None:
    with pytest.raises(ValueError, match="no attention projections"):
        pretrained.build_finetune(resnet, 2, options("lora"))


@pytest.mark.parametrize(
    "config",
    [
        {"model_type": "vit", "hidden_size": 384, "num_attention_heads": 6, "patch_size": 16},
        {"model_type": "resnet", "layer_type": "basic", "depths": [2, 2, 2, 2]}
        | {"hidden_sizes": [64, 128, 256, 512], "embedding_size": 64},
    ],
    ids=["vit-small", "resnet-18"],
)
def test_the_vision_footprint_is_within_2x_of_a_training_forward_pass(
    config: dict[str, Any],
) -> None:
    from transformers import AutoConfig, AutoModel

    hf_config = AutoConfig.for_model(**config)
    with torch.device("meta"):
        model = AutoModel.from_config(hf_config)
        x = torch.zeros(2, 3, 224, 224)
    counter = CreatedBytes()
    with torch.no_grad(), counter:
        model.train()(pixel_values=x)
    parameters = sum(p.numel() for p in model.parameters())
    estimate = pretrained_vision(parameters, hf_config.to_dict(), (224, 224), 10, "full", 8)
    assert 0.5 <= estimate.activation_bytes_per_row / (counter.total / 2) <= 2.0
    frozen = pretrained_vision(parameters, hf_config.to_dict(), (224, 224), 10, "head", 8)
    assert (
        frozen.trained < 10_000
        and frozen.activation_bytes_per_row < estimate.activation_bytes_per_row
    )


def test_registration_records_the_processors_size_and_the_footprint_reads_it(
    resnet: Path,
) -> None:
    from app.core.kinds import Head
    from app.models import BaseModelRow
    from app.schemas.dataset import DataKind
    from app.schemas.job import JobSpec
    from app.services.base_model_catalog import _config_summary
    from app.services.dataset_catalog import DatasetInfo
    from app.services.pretrained_checks import _footprint

    summary = _config_summary(resnet, "vision")
    assert summary["image_input_size"] == [12, 12] and summary["hidden_sizes"] == [8, 16]
    row = BaseModelRow(name="r", family="vision", model_type="resnet", parameters=10_000)
    spec = JobSpec.model_validate(
        {
            "model_name": "m",
            "dataset": {"id": "d"},
            "model": {"arch": "pretrained", "base": "r", "finetune": "full"},
        }
    )
    info = DatasetInfo(DataKind.image, Task.classification, [3, 20, 20], ["a", "b"])
    row.config = summary
    small = _footprint(spec, Head.classification, row, info).activation_bytes_per_row
    row.config = {k: v for k, v in summary.items() if k != "image_input_size"}  # 224, as before
    assert _footprint(spec, Head.classification, row, info).activation_bytes_per_row > 100 * small
