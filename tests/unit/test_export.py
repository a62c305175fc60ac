"""The exports' engine on fixed bundles, for the kinds the integration tests do not train: an
ONNX graph answers what predict answers for a regressor (target units), an mlp on images
(flattened pixels) and a transformer on text of any length; a fine-tuned base's Hugging Face
folder answers a regression as its README says, from texts or from image files."""

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from PIL import Image

from app.ml.bundle import ModelBundle
from app.ml.export import About, hf_folder, write_onnx
from app.ml.images import ChannelStats
from app.ml.preprocessing import Preprocessor, Standardizer
from app.ml.pretrained import build_finetune
from app.ml.text import Tokenizer
from app.ml.zoo import build_model
from app.serving.predictor import decode, predict
from tests.hf_models import tiny_bert, tiny_resnet

ABOUT = About("m", 3, "ab" * 32)
ATOL = 1e-4


def bundle(arch: str, pre: Preprocessor, outputs: int, **options: Any) -> ModelBundle:
    torch.manual_seed(0)
    model = build_model(arch, pre.model_input_shape, outputs, options).eval()
    classes = None if outputs == 1 else list(range(outputs))
    task = "regression" if outputs == 1 else "classification"
    y = Standardizer(torch.tensor([10.0]), torch.tensor([4.0])) if outputs == 1 else None
    return ModelBundle(arch, options, task, outputs, classes, pre, y, model)


def exported(b: ModelBundle, tmp_path: Path) -> ort.InferenceSession:
    write_onnx(b, ABOUT, tmp_path / "m.onnx")
    return ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])


def answers(b: ModelBundle, x: torch.Tensor) -> np.ndarray:
    out = predict(b, x)
    return np.array(out.probabilities if out.probabilities is not None else out.predictions)


def test_a_regressor_answers_in_target_units(tmp_path: Path) -> None:
    scaler = Standardizer(torch.tensor([1.0, -2.0, 0.5]), torch.tensor([2.0, 0.5, 3.0]))
    b = bundle("mlp", Preprocessor("tabular", [3], x_scaler=scaler), 1, hidden=[8])
    model = exported(b, tmp_path)
    x = torch.randn(5, 3) * 3
    (values,) = model.run(None, {"input": x.numpy()})
    assert values.shape == (5,) and [o.name for o in model.get_outputs()] == ["values"]
    np.testing.assert_allclose(values, answers(b, x), atol=ATOL)
    meta = model.get_modelmeta().custom_metadata_map
    assert (meta["trainserve.task"], meta["trainserve.model_name"]) == ("regression", "m")


def test_an_mlp_on_images_takes_uint8_pixels(tmp_path: Path) -> None:
    stats = ChannelStats(torch.tensor([0.2, 0.5, 0.4]), torch.tensor([0.3, 0.2, 0.25]))
    pre = Preprocessor("image", [3, 4, 5], channels=stats, flatten=True)
    b = bundle("mlp", pre, 3, hidden=[16])
    x = torch.randint(0, 256, (4, 3, 4, 5), dtype=torch.uint8)
    (probs,) = exported(b, tmp_path).run(None, {"input": x.numpy()})
    np.testing.assert_allclose(probs, answers(b, x), atol=ATOL)


def test_a_text_transformer_takes_ids_of_any_length(tmp_path: Path) -> None:
    tokenizer = Tokenizer(["good", "bad", "film", "plot"])
    pre = Preprocessor("text", [8], tokenizer=tokenizer)
    options = {"num_embeddings": tokenizer.size, "encoder": "transformer", "embed_dim": 16}
    b = bundle("text", pre, 2, **options, heads=2, layers=1)
    model = exported(b, tmp_path)
    x = pre.encode_texts(["good film", "bad bad plot and more words than fit", "", "plot"])
    (probs,) = model.run(None, {"input": x.numpy()})
    np.testing.assert_allclose(probs, answers(b, x), atol=ATOL)
    (short,) = model.run(None, {"input": x[:, :3].numpy()})  # T is dynamic, up to max_len
    np.testing.assert_allclose(short, answers(b, x[:, :3]), atol=ATOL)
    meta = model.get_modelmeta().custom_metadata_map
    assert json.loads(meta["trainserve.tokenizer"])["tokens"] == tokenizer.tokens


def test_a_finetuned_regressor_as_a_hugging_face_folder(tmp_path: Path) -> None:
    base = tiny_bert(tmp_path / "base")
    options = {
        "base": {"id": "b1", "name": "tiny", "sha256": "00", "source": "upload", "folder": "x"},
        "family": "text-encoder",
        "head": "regression",
        "finetune": "full",
        "dropout": 0.0,
    }
    torch.manual_seed(0)
    model = build_finetune(base, 1, options).eval()
    pre = Preprocessor.fit_base_text(base, 10)
    y = Standardizer(torch.tensor([3.0]), torch.tensor([2.0]))
    b = ModelBundle("pretrained", options, "regression", 1, None, pre, y, model)
    hf_folder(b, base, ABOUT, tmp_path / "out")
    about = json.loads((tmp_path / "out" / "trainserve.json").read_text())
    assert about["target"] == {"mean": 3.0, "std": 2.0} and about["base"]["name"] == "tiny"
    code = (tmp_path / "out" / "README.md").read_text().split("```python\n")[1].split("```")[0]
    texts = ["the film was good", "bad", "a great plot , a great movie"]
    scope: dict[str, Any] = {"folder": str(tmp_path / "out"), "texts": texts}
    exec(code, scope)
    np.testing.assert_allclose(
        scope["values"].numpy(), answers(b, pre.encode_texts(texts)), atol=ATOL
    )


def test_a_finetuned_vision_regressor_on_grayscale_as_onnx_and_a_hugging_face_folder(
    tmp_path: Path,
) -> None:
    """A ResNet base (its pooler pools) on 1-channel images of another size than it takes:
    both exports repeat predict's decode, resize, channel repeat and normalization."""
    base = tiny_resnet(tmp_path / "base")
    options = {
        "base": {"id": "b1", "name": "tiny-resnet", "sha256": "00", "source": "upload"},
        "family": "vision",
        "head": "regression",
        "finetune": "full",
        "dropout": 0.0,
    }
    torch.manual_seed(0)
    model = build_finetune(base, 1, options).eval()
    pre = Preprocessor.fit_base_image(base, torch.zeros(1, 1, 20, 20, dtype=torch.uint8))
    y = Standardizer(torch.tensor([3.0]), torch.tensor([2.0]))
    b = ModelBundle("pretrained", options, "regression", 1, None, pre, y, model)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(rng.integers(0, 256, (17 + i, 23, 3), dtype=np.uint8)).save(paths[-1])
    x = decode(b, [base64.b64encode(p.read_bytes()).decode() for p in paths])
    expected = answers(b, x)

    (values,) = exported(b, tmp_path).run(None, {"input": x.numpy()})
    np.testing.assert_allclose(values, expected, atol=ATOL)
    hf_folder(b, base, ABOUT, tmp_path / "out")
    about = json.loads((tmp_path / "out" / "trainserve.json").read_text())
    assert (about["pooling"], about["input_shape"]) == ("pooler", [1, 20, 20])
    assert (tmp_path / "out" / "preprocessor_config.json").is_file()
    code = (tmp_path / "out" / "README.md").read_text().split("```python\n")[1].split("```")[0]
    scope: dict[str, Any] = {"folder": str(tmp_path / "out"), "paths": [str(p) for p in paths]}
    exec(code, scope)
    np.testing.assert_allclose(scope["values"].numpy(), expected, atol=ATOL)
