"""The exports' engine on fixed bundles, for the kinds the integration tests do not train: an
ONNX graph answers what predict answers for a regressor (target units), an mlp on images
(flattened pixels) and a transformer on text of any length; a fine-tuned base's Hugging Face
folder answers a regression as its README says."""

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from app.ml.bundle import ModelBundle
from app.ml.export import About, hf_folder, write_onnx
from app.ml.images import ChannelStats
from app.ml.preprocessing import Preprocessor, Standardizer
from app.ml.pretrained import build_finetune
from app.ml.text import Tokenizer
from app.ml.zoo import build_model
from app.serving.predictor import predict
from tests.hf_models import tiny_bert

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
