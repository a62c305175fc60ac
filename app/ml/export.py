"""A registered version in forms other tools load: an ONNX graph that answers what predict
answers from the rows predict decodes, and a Hugging Face folder of a fine-tuned base with
its head beside it. Pure engine code: where exports live and when they are built is
app/services/exports.py's."""

import gzip
import json
import shutil
import tarfile
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from app.ml.bundle import ModelBundle
from app.ml.export_vision import image_about, vision_readme
from app.ml.preprocessing import Preprocessor
from app.ml.pretrained import PROCESSOR_FILES, BaseTokenizer, CausalLM, TextModel, VisionModel
from app.ml.text import Tokenizer

# The exporters keep process-wide state while they trace (the TorchScript one's
# GLOBALS.in_onnx_export, torch.export's module globals): one export at a time per process.
EXPORTER = threading.Lock()
ONNX_MAX_BYTES = 2**31 - 1  # one protobuf: past this, weights would need a second file
PROP = "trainserve."  # the prefix of the metadata_props we write
# What the graph's one input holds, per kind of version (Preprocessor.kind, or a base's text).
INPUTS = {
    "tabular": "float32 (N, F): raw feature values, in trainserve.feature_names order",
    "image": "uint8 (N, C, H, W): pixels 0..255, C H W as trainserve.input_shape",
    "text": "int64 (N, T): word ids from trainserve.tokenizer, 0 padding, T <= max_len",
    "base-text": "int64 (N, 2, T): the base tokenizer's input_ids and attention_mask",
}
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
    "added_tokens.json",
    "merges.txt",
    "vocab.json",
)


class ExportRefused(ValueError):
    """This version cannot take this form; the message says why."""


class ExporterMissing(RuntimeError):
    """A package the exporter needs is not installed on this host."""


@dataclass(frozen=True)
class About:
    """Which version an export is of: written into it, so the file says where it came from."""

    model_name: str
    version: int
    checkpoint_sha256: str


class Served(nn.Module):
    """Rows in the stored form predict decodes them to → what predict answers: the stored
    preprocessing, the network, then probabilities (softmax) or values in target units."""

    def __init__(self, bundle: ModelBundle) -> None:
        super().__init__()
        self.model = bundle.model
        self.preprocessor = bundle.preprocessor
        self.y_scaler = bundle.y_scaler if bundle.task == "regression" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.preprocessor
        if pre.x_scaler is not None:
            x = pre.x_scaler(x)  # (N, F) standardized as in training
        elif pre.kind == "image":
            x = pre.batch(x)  # uint8 (N, C, H, W) → normalized float32 (resized for a base)
        out = self.model(x)  # (N, outputs); a base's text needs no trim: its mask pools
        if self.y_scaler is not None:
            return self.y_scaler.inverse(out).squeeze(1)  # (N,)
        return torch.softmax(out.float(), dim=1)  # (N, classes)


def input_kind(pre: Preprocessor) -> str:
    return "base-text" if isinstance(pre.tokenizer, BaseTokenizer) else pre.kind


def write_onnx(bundle: ModelBundle, about: About, dest: Path) -> None:
    """The version as one ONNX file at dest: dynamic batch (and text length), its classes,
    features and input described in metadata_props."""
    _check_onnx_size(bundle)
    x, dims = _example(bundle.preprocessor)
    graph = Served(bundle).eval()
    output = "values" if bundle.task == "regression" else "probabilities"
    with EXPORTER:
        program = _onnx().export(
            graph,
            (x,),
            dynamo=True,
            dynamic_shapes={"x": dims},
            input_names=["input"],
            output_names=[output],
            verbose=False,
        )
    program.model.metadata_props.update(onnx_metadata(bundle, about, output))
    program.save(str(dest), external_data=False)


def _onnx() -> Any:
    """torch.onnx, once the packages its dynamo exporter needs are known to be here."""
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise ExporterMissing(f"ONNX export needs the onnx and onnxscript packages: {exc}") from exc
    return torch.onnx


def _check_onnx_size(bundle: ModelBundle) -> None:
    size = sum(t.numel() * t.element_size() for t in bundle.model.state_dict().values())
    if size > ONNX_MAX_BYTES:
        raise ExportRefused(f"the weights are {size} bytes, past what one ONNX file holds (2 GiB)")


def _example(pre: Preprocessor) -> tuple[torch.Tensor, dict[int, Any]]:
    """An input of the stored form (its values do not matter, only its type and shape) and
    its dynamic dimensions: the batch, and the tokens of text up to max_len."""
    batch: dict[int, Any] = {0: torch.export.Dim("batch", min=1)}
    kind, shape = input_kind(pre), pre.input_shape
    if kind == "tabular":
        return torch.zeros(2, *shape), batch
    if kind == "image":
        return torch.zeros(2, *shape, dtype=torch.uint8), batch
    max_len = shape[0]
    tokens = {1 if kind == "text" else 2: torch.export.Dim("tokens", min=1, max=max_len)}
    rows = (2, max_len) if kind == "text" else (2, 2, max_len)
    # One length only (max_len 1) cannot be dynamic: the exporter would refuse the range.
    return torch.ones(rows, dtype=torch.long), batch | (tokens if max_len > 1 else {})


def onnx_metadata(bundle: ModelBundle, about: About, output: str) -> dict[str, str]:
    pre = bundle.preprocessor
    props: dict[str, Any] = {
        "model_name": about.model_name,
        "version": about.version,
        "checkpoint_sha256": about.checkpoint_sha256,
        "arch": bundle.arch,
        "task": bundle.task,
        "input_kind": input_kind(pre),
        "input": INPUTS[input_kind(pre)],
        "input_shape": json.dumps(pre.input_shape),
        "output": output,
        "classes": json.dumps(bundle.classes),
        "feature_names": json.dumps(pre.feature_names),
    }
    if isinstance(pre.tokenizer, Tokenizer):
        props["tokenizer"] = json.dumps(pre.tokenizer.to_json())
    if "base" in bundle.options:
        props["base"] = json.dumps(_base(bundle))
    return {PROP + k: str(v) for k, v in props.items()}


def _base(bundle: ModelBundle) -> dict[str, Any]:
    """The base as a user knows it (its folder on this host is no one else's business)."""
    return {k: bundle.options["base"][k] for k in ("id", "name", "sha256")}


def write_hf(bundle: ModelBundle, base: Path, about: About, dest: Path) -> None:
    """A fine-tuned base's version as a .tar.gz at dest of one folder that
    transformers.AutoModel.from_pretrained loads: the backbone with the trained (and LoRA
    merged) weights, the base's tokenizer, head.safetensors, trainserve.json, README.md."""
    # Built beside dest, not in /tmp: a base's weights may be GBs, and tmpfs small.
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".hf-") as tmp:
        folder = Path(tmp)
        hf_folder(bundle, base, about, folder)
        _tar_gz(folder, dest, f"{about.model_name}-v{about.version}")


def hf_folder(bundle: ModelBundle, base: Path, about: About, out: Path) -> None:
    model = bundle.model
    if isinstance(model, CausalLM):
        _generator_folder(bundle, model, base, about, out)
        return
    if not isinstance(model, TextModel | VisionModel):
        raise ExportRefused("hf is only for versions fine-tuned from a base")
    _save_backbone(model.backbone, base, out)
    if bundle.classes is not None:
        _add_labels(out / "config.json", bundle.classes)
    head = {"weight": model.head.weight, "bias": model.head.bias}
    save_file({k: v.detach().cpu().contiguous() for k, v in head.items()}, out / "head.safetensors")
    if isinstance(model, VisionModel):
        description = _head_about(bundle, about) | image_about(model, bundle.preprocessor)
        readme = vision_readme(description, ANSWER[bundle.task])
    else:
        description = hf_description(bundle, model.pooling, about)
        readme = hf_readme(description)
    (out / "trainserve.json").write_text(json.dumps(description, indent=2) + "\n")
    (out / "README.md").write_text(readme)


def _save_backbone(backbone: Any, base: Path, out: Path) -> None:
    """The network (a PreTrainedModel) and the base's tokenizer or image processor files, as
    save_pretrained writes them. Safetensors only: transformers 5 writes nothing else, and 4.x
    is told so."""
    backbone.save_pretrained(out, safe_serialization=True)
    kept = (*TOKENIZER_FILES, *PROCESSOR_FILES)
    for path in sorted(base.iterdir()):
        if path.is_file() and (path.name in kept or path.suffix == ".model"):
            shutil.copyfile(path, out / path.name)


def _generator_folder(
    bundle: ModelBundle, model: CausalLM, base: Path, about: About, out: Path
) -> None:
    """A generator is whole in transformers' own terms (its LM head is the base's): the folder
    loads with AutoModelForCausalLM and generates as trainserve does."""
    _save_backbone(model.backbone, base, out)
    description = {
        "model_name": about.model_name,
        "version": about.version,
        "checkpoint_sha256": about.checkpoint_sha256,
        "task": bundle.task,
        "max_len": bundle.preprocessor.input_shape[0],
        "base": _base(bundle),
    }
    (out / "trainserve.json").write_text(json.dumps(description, indent=2) + "\n")
    (out / "README.md").write_text(
        GENERATOR_README.format(name=about.model_name, version=about.version)
    )


GENERATOR_README = """# {name} v{version}, exported by trainserve

A causal language model fine-tuned by trainserve (LoRA, if any, merged into the weights).

```python
from transformers import AutoModelForCausalLM, AutoTokenizer

model = AutoModelForCausalLM.from_pretrained(folder)
tokenizer = AutoTokenizer.from_pretrained(folder)
ids = tokenizer("your prompt", return_tensors="pt").input_ids
print(tokenizer.decode(model.generate(ids, max_new_tokens=64)[0]))
```
"""


def _add_labels(config: Path, classes: list[Any]) -> None:
    data = json.loads(config.read_text())
    data["id2label"] = {str(i): str(c) for i, c in enumerate(classes)}
    data["label2id"] = {str(c): i for i, c in enumerate(classes)}
    config.write_text(json.dumps(data, indent=2) + "\n")


def hf_description(bundle: ModelBundle, pooling: str, about: About) -> dict[str, Any]:
    """trainserve.json: how to apply head.safetensors to the backbone's hidden states."""
    tokenizer = bundle.preprocessor.tokenizer
    assert isinstance(tokenizer, BaseTokenizer)
    return _head_about(bundle, about) | {
        "pooling": pooling,  # "mean" over the real tokens, or the "last" real token
        "max_len": bundle.preprocessor.input_shape[0],
        "tokenizer": {"pad_token": tokenizer.pad_token, "padding_side": "right"},
    }


def _head_about(bundle: ModelBundle, about: About) -> dict[str, Any]:
    """What every trainserve.json of a version with a head says: which version, its task and
    classes, the head's file, the base, and for a regressor the target's units."""
    out: dict[str, Any] = {
        "model_name": about.model_name,
        "version": about.version,
        "checkpoint_sha256": about.checkpoint_sha256,
        "task": bundle.task,
        "classes": bundle.classes,
        "head": {"file": "head.safetensors", "outputs": bundle.output_dim},
        "base": _base(bundle),
    }
    if bundle.task == "regression" and bundle.y_scaler is not None:
        # The head answers standardized targets; these bring them back to the data's units.
        scaler = bundle.y_scaler
        out["target"] = {"mean": float(scaler.mean.item()), "std": float(scaler.std.item())}
    return out


POOLING = {
    "mean": "pooled = (h * mask).sum(1) / mask.sum(1).clamp(min=1)  # the mean over real tokens",
    "last": "pooled = h[torch.arange(len(h)), mask.sum((1, 2)) - 1]  # the last real token",
}
ANSWER = {
    "classification": "probs = out.softmax(-1)  # (N, classes) in about['classes'] order",
    "regression": "values = out[:, 0] * about['target']['std'] + about['target']['mean']",
}
README = """# {name} v{version}, exported by trainserve

The backbone is {base} with the fine-tuned weights (LoRA merged); the head trainserve trained
on it is head.safetensors, applied as trainserve.json says. With `folder` this folder and
`texts` a list of strings, this answers what POST /v1/models/{name}/predict answers:

```python
import json, torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer
about = json.load(open(f"{{folder}}/trainserve.json"))
head = load_file(f"{{folder}}/head.safetensors")  # the Linear on the pooled hidden states
tok, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder)
tok.pad_token, tok.padding_side = about["tokenizer"]["pad_token"], "right"
enc = tok(texts, padding=True, truncation=True, max_length=about["max_len"], return_tensors="pt")
with torch.no_grad():  # (N, T, D)
    h = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
mask = enc["attention_mask"].unsqueeze(-1)  # (N, T, 1)
{pooling}
out = pooled @ head["weight"].T + head["bias"]
{answer}
```
"""


def hf_readme(about: dict[str, Any]) -> str:
    """A few lines of Python that apply the export as predict does, for this version's pooling
    and task (tests/integration/test_export.py runs them)."""
    return README.format(
        name=about["model_name"],
        version=about["version"],
        base=about["base"]["name"],
        pooling=POOLING[about["pooling"]],
        answer=ANSWER[about["task"]],
    )


def _tar_gz(folder: Path, dest: Path, top: str) -> None:
    """The folder's files under top/ in a .tar.gz that is the same bytes for the same files
    (no times, owners or modes of this host)."""
    with (
        open(dest, "wb") as raw,
        # Weights barely compress: the fastest level costs a fraction of the time for as much.
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=1) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for path in sorted(folder.iterdir()):
            info = tarfile.TarInfo(f"{top}/{path.name}")
            info.size, info.mode = path.stat().st_size, 0o644
            with open(path, "rb") as fh:
                tar.addfile(info, fh)
