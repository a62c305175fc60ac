"""The model zoo, preprocessing, the bundle and the predictor, with fixed weights."""

import math
from pathlib import Path

import pytest
import torch

from app.core.config import Settings
from app.core.errors import Unprocessable
from app.ml.bundle import ModelBundle, load_bundle
from app.ml.devices import UnavailableDevice, resolve_device
from app.ml.preprocessing import Standardizer
from app.ml.zoo import build_model
from app.serving.predictor import decode, predict, rows_to_tensor
from app.serving.runtime import Serving
from tests.support import identity_mlp, tabular_bundle


def test_mlp_is_the_seed_network() -> None:
    model = build_model("mlp", [784], 10, {"hidden": [128], "dropout": 0.0})
    shapes = [tuple(p.shape) for p in model.parameters()]
    assert shapes == [(128, 784), (128,), (10, 128), (10,)]
    assert isinstance(model[1], torch.nn.ReLU)


def test_standardizer_handles_constant_features() -> None:
    x = torch.tensor([[1.0, 5.0], [3.0, 5.0]])
    scaler = Standardizer.fit(x)
    assert torch.equal(scaler.std, torch.tensor([1.0, 1.0]))
    assert torch.allclose(scaler(x), torch.tensor([[-1.0, 0.0], [1.0, 0.0]]))
    assert torch.allclose(scaler.inverse(scaler(x)), x)


def identity_bundle(tmp_path: Path) -> ModelBundle:
    bundle = tabular_bundle(identity_mlp(), ["no", "yes"], [1.0, 1.0], [2.0, 2.0])
    bundle.save(tmp_path / "m.safetensors")
    return load_bundle(tmp_path / "m.safetensors")


def test_predict_applies_the_stored_preprocessing_exactly(tmp_path: Path) -> None:
    bundle = identity_bundle(tmp_path)
    # (x - 1) / 2 → [2, 0] then relu → logits [2, 0]
    result = predict(bundle, decode(bundle, [[5, 1], [1, 3]]))
    assert result.predictions == ["no", "yes"]
    e2 = math.exp(2)
    assert result.probabilities is not None
    assert result.probabilities[0] == pytest.approx([e2 / (e2 + 1), 1 / (e2 + 1)], abs=1e-6)
    assert result.probabilities[1] == pytest.approx(
        [1 / (1 + math.exp(1)), math.exp(1) / (1 + math.exp(1))], abs=1e-6
    )


def test_device_auto_takes_the_gpu_only_when_there_is_one() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


@pytest.mark.skipif(
    torch.cuda.is_available(),
    reason="waits for a machine without a CUDA GPU: with one, serving on cuda starts",
)
def test_serving_on_cuda_without_a_gpu_is_refused_at_start() -> None:
    with pytest.raises(UnavailableDevice, match="TRAINSERVE_SERVE_DEVICE asks for device 'cuda'"):
        Serving(Settings(serve_device="cuda"))


@pytest.mark.gpu
def test_a_version_served_on_the_gpu_answers_as_on_the_cpu(tmp_path: Path) -> None:
    cpu = identity_bundle(tmp_path)
    gpu = load_bundle(tmp_path / "m.safetensors", "cuda")
    assert gpu.device.type == "cuda"
    rows = [[5, 1], [1, 3], [-2, 7]]
    on_cpu, on_gpu = predict(cpu, decode(cpu, rows)), predict(gpu, decode(gpu, rows))
    assert on_gpu.predictions == on_cpu.predictions
    assert on_gpu.probabilities == pytest.approx(on_cpu.probabilities, abs=1e-6)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([[1]], "inputs[0]: expected 2 features, got 1"),
        ([[1, 2], {"a": 1}], "inputs[1]: expected a list of 2 numbers, got dict"),
        ([[1, None]], "inputs[0]: feature 1 must be a number, got NoneType"),
        ([[1, float("nan")]], "inputs[0]: feature 1 must be a finite"),
        ([[1, 1e39]], "inputs[0]: feature 1 must be a finite"),
        ([[1, 10**400]], "inputs[0]: feature 1 must be a finite"),  # beyond float64: was a 500
        ([[1, "2"]], "inputs[0]: feature 1 must be a number, got str"),
        ([[1, 2], [3, [4]]], "inputs[1]: feature 1 must be a number, got list"),
        ([[False, 1]], "inputs[0]: feature 0 must be a number, got bool"),
    ],
)
def test_bad_rows_name_the_row_and_the_problem(rows: list, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(Unprocessable) as exc:
        rows_to_tensor(rows, 2)
    assert exc.value.message.startswith(message)


def test_a_row_of_the_wrong_width_lists_the_features_in_their_order() -> None:
    """For a CSV with a categorical column, "feature order" is the one-hot order: the
    message says it, and a wrong value names its feature."""
    names = ["age", "city=lima", "city=oslo", "income"]
    with pytest.raises(Unprocessable) as short:
        rows_to_tensor([[30, 1, 0]], 4, names=names)
    assert short.value.message == (
        "inputs[0]: expected 4 features, got 3; in this order: age, city=lima, city=oslo, "
        "income (or send an object of named features)"
    )
    (problem,) = short.value.problems()
    assert (problem["field"], problem["features"]) == ("inputs.0", names)
    with pytest.raises(Unprocessable) as typed:
        rows_to_tensor([[30, 1, 0, 10], [30, "lima", 0, 10]], 4, names=names)
    assert typed.value.message == ("inputs[1]: feature 1 ('city=lima') must be a number, got str")
    assert typed.value.problems()[0]["feature"] == "city=lima"
    many = [f"f{i}" for i in range(30)]
    with pytest.raises(Unprocessable) as long:
        rows_to_tensor([[0] * 29], 30, names=many)
    assert "f19, ..." in long.value.message and "f20" not in long.value.message
