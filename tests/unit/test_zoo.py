"""Every zoo entry builds from a default spec and runs; image and text models behave as built."""

import json
from typing import Any

import pytest
import torch
from torch import nn

from app.ml.zoo import OPTIONS, ZOO, arch_options, build_model
from app.schemas.job import Arch, ModelConfig

VOCAB = 50


def text_ids(rows: int = 5, max_len: int = 20, seed: int = 0) -> torch.Tensor:
    """(rows, max_len) ids in [2, VOCAB) with rows of different lengths; the last is all padding."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, VOCAB, (rows, max_len), generator=gen)
    for i in range(rows):
        ids[i, max(max_len - 4 * i - 1, 0) :] = 0
    ids[-1] = 0
    return ids


def build(config: dict[str, Any], input_shape: list[int], output_dim: int = 7) -> nn.Module:
    options = arch_options(ModelConfig(**config).model_dump())
    if config["arch"] == "text":
        options["num_embeddings"] = VOCAB
    return build_model(config["arch"], input_shape, output_dim, options)


CASES = [
    pytest.param({"arch": "mlp"}, [64], torch.randn(5, 64), id="mlp"),
    pytest.param({"arch": "cnn"}, [3, 16, 16], torch.randn(5, 3, 16, 16), id="cnn-rgb"),
    pytest.param({"arch": "cnn"}, [1, 8, 8], torch.randn(5, 1, 8, 8), id="cnn-gray"),
    pytest.param({"arch": "resnet"}, [3, 16, 16], torch.randn(5, 3, 16, 16), id="resnet-rgb"),
    pytest.param({"arch": "resnet"}, [1, 8, 8], torch.randn(5, 1, 8, 8), id="resnet-gray"),
    pytest.param({"arch": "text", "encoder": "bag"}, [20], text_ids(), id="text-bag"),
    pytest.param(
        {"arch": "text", "encoder": "transformer"}, [20], text_ids(), id="text-transformer"
    ),
]


def test_the_cases_cover_the_whole_zoo() -> None:
    # A pretrained network is built around its base instead (tests/unit/test_pretrained.py).
    built_here = set(Arch) - {Arch.pretrained}
    assert set(ZOO) == built_here == set(OPTIONS)
    assert {case.values[0]["arch"] for case in CASES} == built_here


@pytest.mark.parametrize(("config", "input_shape", "x"), CASES)
def test_every_zoo_entry_builds_and_runs_forward(
    config: dict[str, Any], input_shape: list[int], x: torch.Tensor
) -> None:
    torch.manual_seed(0)
    model = build(config, input_shape)
    # eval without grad takes the transformer's fast path, where all-padding rows once gave NaN
    for training in (True, False):
        model.train(training)
        with torch.set_grad_enabled(training):
            out = model(x)
        assert out.shape == (5, 7)
        assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    ("arch", "keys"),
    [
        ("mlp", {"hidden", "dropout"}),
        ("cnn", {"channels", "dropout"}),
        ("resnet", {"width", "depth", "dropout"}),
        ("text", {"encoder", "embed_dim", "layers", "heads", "dropout"}),
    ],
)
def test_arch_options_hold_only_that_archs_fields_as_json(arch: str, keys: set[str]) -> None:
    options = arch_options(ModelConfig(arch=Arch(arch)).model_dump())
    assert set(options) == keys
    assert json.loads(json.dumps(options)) == options


def test_a_shape_of_the_wrong_rank_is_refused() -> None:
    with pytest.raises(ValueError, match="mlp needs an input shape of 1"):
        build_model("mlp", [1, 8, 8], 2, {"hidden": [4]})
    with pytest.raises(ValueError, match="cnn needs an input shape of 3"):
        build_model("cnn", [64], 2, {"channels": [4]})


@pytest.mark.parametrize("input_shape", [[1, 1, 1], [3, 1, 9], [1, 5, 3]])
def test_cnn_pools_only_sides_that_can_halve(input_shape: list[int]) -> None:
    model = build_model("cnn", input_shape, 3, {"channels": [4, 4, 4, 4]})
    assert model(torch.randn(2, *input_shape)).shape == (2, 3)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_resnet_depth_and_width_change_its_size() -> None:
    def size(width: int, depth: int) -> int:
        return parameter_count(
            build_model("resnet", [3, 8, 8], 10, {"width": width, "depth": depth})
        )

    assert size(8, 1) < size(8, 2) < size(8, 3)
    assert size(8, 2) < size(16, 2)
    # stem + 3 stages of 2 blocks, 2 convs each, + 2 projection shortcuts
    model = build_model("resnet", [3, 8, 8], 10, {"width": 8, "depth": 2})
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 1 + 3 * 2 * 2 + 2


@pytest.mark.parametrize("encoder", ["bag", "transformer"])
def test_text_models_ignore_padding(encoder: str) -> None:
    torch.manual_seed(0)
    options = {"encoder": encoder, "embed_dim": 16, "layers": 2, "heads": 2}
    model = build_model("text", [20], 3, {**options, "num_embeddings": VOCAB}).eval()
    ids = text_ids()
    with torch.no_grad():
        padded = model(ids)
        # each row alone, cut to its real tokens, gives the same output
        for i in range(len(ids) - 1):
            length = int((ids[i] != 0).sum())
            torch.testing.assert_close(model(ids[i : i + 1, :length])[0], padded[i])
        # what the padding embeds to does not matter, and all-padding pools to zeros
        model.embedding.weight[0] = torch.randn(16)
        torch.testing.assert_close(model(ids), padded)
    torch.testing.assert_close(padded[-1], model.head.bias.detach())


def loss_after_training(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int
) -> list[float]:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(steps):
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_cnn_learns_which_half_of_the_image_is_bright() -> None:
    torch.manual_seed(0)
    y = torch.arange(64) % 2
    x = torch.randn(64, 1, 8, 8) * 0.3
    x[y == 0, :, :, :4] += 1.0
    x[y == 1, :, :, 4:] += 1.0
    model = build_model("cnn", [1, 8, 8], 2, {"channels": [8, 8]})
    losses = loss_after_training(model, x, y, steps=25)
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("encoder", ["bag", "transformer"])
def test_text_model_learns_which_words_mark_a_class(encoder: str) -> None:
    torch.manual_seed(0)
    y = torch.arange(64) % 2
    # class 0 draws its words from ids 2..11, class 1 from 12..21; lengths vary
    ids = torch.randint(2, 12, (64, 12)) + 10 * y.unsqueeze(1)
    ids[:, 6:][torch.rand(64, 6) < 0.5] = 0
    options = {"encoder": encoder, "embed_dim": 16, "layers": 1, "heads": 2}
    model = build_model("text", [12], 2, {**options, "num_embeddings": 22})
    losses = loss_after_training(model, ids, y, steps=25)
    assert losses[-1] < 0.5 * losses[0]
