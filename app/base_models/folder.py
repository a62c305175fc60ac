"""Checking a Hugging Face model folder before anything loads it: safetensors weights, JSON and
text files only, no custom code, no links. Its family, size and identity come from the files'
bytes (JSON, safetensors headers, hashes), never from loading a tensor or running its code."""

import hashlib
import json
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, TypeGuard

from app.base_models.archive import Budget
from app.core.config import Settings
from app.core.errors import Unprocessable
from app.core.files import sha256_file

_CONVERT = (
    "only .safetensors weights are accepted — convert with `safetensors` / "
    "save_pretrained(safe_serialization=True)"
)
_PICKLE = f"pickle-based weights run code when loaded; {_CONVERT}"
_CODE = "custom code is never executed; trainserve runs only the architectures transformers ships"
_REFUSED = {
    **dict.fromkeys((".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib"), _PICKLE),
    **dict.fromkeys((".npy", ".npz"), f"NumPy files can hold pickled objects; {_CONVERT}"),
    ".h5": f"Keras/TensorFlow weights, which can hold code; {_CONVERT}",
    ".msgpack": f"Flax weights, which trainserve does not load; {_CONVERT}",
    **dict.fromkeys((".py", ".so", ".pyc", ".dll", ".dylib", ".sh", ".exe"), _CODE),
}
# "" is a name without a suffix: LICENSE, NOTICE, and .gitattributes or .gitignore, whose
# suffix is "" to pathlib. ".model" is a sentencepiece tokenizer.
_ALLOWED = frozenset({".json", ".txt", ".md", ".safetensors", ".model", ".jinja", ".tiktoken", ""})
# The top-level files transformers reads settings from, each of which could ask for custom code.
_CONFIGS = (
    "config.json",
    "tokenizer_config.json",
    "preprocessor_config.json",
    "image_processor_config.json",
    "processor_config.json",
    "generation_config.json",
)
_CUSTOM_CODE_KEYS = ("auto_map", "custom_pipelines")
# JSON is parsed whole in memory: bounded first. A tokenizer.json with a large vocabulary is
# tens of MB; settings files are KB.
_MAX_JSON_BYTES = 16 << 20
_MAX_TOKENIZER_JSON_BYTES = 64 << 20
_MAX_SAFETENSORS_HEADER = 100_000_000  # safetensors' own limit
_DTYPE_BYTES = {
    **{"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "C64": 8, "BOOL": 1},
    **{"I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1},
    **dict.fromkeys(("F8_E4M3", "F8_E4M3FNUZ", "F8_E5M2", "F8_E5M2FNUZ", "F8_E8M0"), 1),
}
_FAMILIES = "text encoders such as BERT, decoders such as GPT-2, vision models such as ViT"


@dataclass(frozen=True)
class FolderInfo:
    family: str  # "text-encoder" | "text-decoder" | "vision"
    model_type: str  # config.json's model_type: "bert", "gpt2", "vit", ...
    parameters: int  # summed from the safetensors headers, no tensor loaded
    files: list[dict[str, Any]]  # {"path", "bytes", "sha256"}, sorted by relative posix path
    sha256: str  # of the lines f"{path}\t{sha256}\n", in that order: the folder's identity


def inspect_folder(root: Path, settings: Settings) -> FolderInfo:
    """Check the model folder `root` (uploaded or the operator's) and describe it, refusing
    with Unprocessable (code "invalid_base_model") whatever would fetch, unpickle or execute
    anything, and with PayloadTooLarge past the limits."""
    listed = _list_files(root, Budget(settings, "the folder"))
    weights = _check_files(listed)
    configs = _read_configs(root, {rel for rel, _ in listed})
    _refuse_custom_code(configs)
    model_type = _model_type(configs["config.json"])
    if configs["config.json"].get("is_encoder_decoder") is True:
        raise _invalid(
            f"'{model_type}' is an encoder-decoder model (T5, BART, Whisper style); trainserve "
            "fine-tunes encoders, decoders and vision models",
            "config.json",
        )
    family = _family(model_type)
    parameters = sum(safetensors_parameters(root / rel, rel) for rel in weights)
    files = [_described(root, rel, size) for rel, size in listed]  # hashing, the slow part: last
    return FolderInfo(family, model_type, parameters, files, folder_sha256(files))


def family_of(model_type: str) -> str | None:
    """What trainserve fine-tunes `model_type` as, read from the heads transformers registers
    for it: an image classifier is a vision model; a causal LM without a masked-LM head is a
    decoder (BERT has both); one with a sequence classifier is an encoder. None: none of these."""
    # Imported here: transformers takes seconds to import, and only this needs it.
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
        MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
    )

    if model_type in MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES:
        return "vision"
    causal = model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    if causal and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return "text-decoder"
    if model_type in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES:
        return "text-encoder"
    return None


def _described(root: Path, rel: str, size: int) -> dict[str, Any]:
    return {"path": rel, "bytes": size, "sha256": sha256_file(root / rel)}


def folder_sha256(files: list[dict[str, Any]]) -> str:
    digest = hashlib.sha256()
    for entry in sorted(files, key=lambda e: e["path"]):
        digest.update(f"{entry['path']}\t{entry['sha256']}\n".encode())
    return digest.hexdigest()


def _invalid(message: str, file: str | None = None) -> Unprocessable:
    details = {"file": file} if file is not None else None
    return Unprocessable(message, details=details, code="invalid_base_model")


def _suffix(rel: str) -> str:
    return PurePosixPath(rel).suffix.lower()


def _list_files(root: Path, budget: Budget) -> list[tuple[str, int]]:
    """Every file under root as (relative posix path, bytes), sorted, from lstat alone: links
    and special files refused, the limits checked before a byte is read."""
    if root.is_symlink() or not root.is_dir():
        raise _invalid(f"the model folder {root.name!r} is not a folder (links are not followed)")
    found = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=_unreadable):
        for name in dirnames:
            _lstat(root, Path(dirpath, name))
            budget.add_folder()
        for name in filenames:
            rel, size = _lstat(root, Path(dirpath, name))
            budget.add_file()
            budget.add_bytes(size)
            found.append((rel, size))
    return sorted(found)


def _unreadable(exc: OSError) -> None:
    # os.walk() skips what it cannot read unless told otherwise: a folder would lose files.
    raise _invalid(f"cannot read {exc.filename!r} in the model folder: {exc.strerror}")


def _lstat(root: Path, path: Path) -> tuple[str, int]:
    rel = path.relative_to(root).as_posix()
    info = os.lstat(path)
    mode = info.st_mode
    if stat.S_ISLNK(mode):
        raise _invalid(
            f"{rel!r} is a symbolic link; a model folder must hold its files themselves "
            "(links are never followed)",
            rel,
        )
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise _invalid(f"{rel!r} is not a regular file (a device, a fifo or a socket)", rel)
    if not rel.isprintable() or not _utf8(rel):
        # The folder's identity is lines of "path<TAB>sha256": a name must not forge one.
        raise _invalid(f"{rel!r} has control characters or bytes that are not UTF-8 in its name")
    return rel, info.st_size


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # os.listdir() decodes non-UTF-8 bytes as lone surrogates
        return False
    return True


def _check_files(listed: list[tuple[str, int]]) -> list[str]:
    """The .safetensors files among `listed`, once every file is one a model folder may hold."""
    for rel, size in listed:
        _check_file(rel, size)
    weights = [rel for rel, _ in listed if _suffix(rel) == ".safetensors"]
    if not weights:
        raise _invalid(
            "no .safetensors weights in the folder: save the model with "
            "save_pretrained(folder, safe_serialization=True)"
        )
    return weights


def _check_file(rel: str, size: int) -> None:
    suffix = _suffix(rel)
    if suffix in _REFUSED:
        raise _invalid(f"{rel}: {_REFUSED[suffix]}", rel)
    if suffix not in _ALLOWED:
        raise _invalid(
            f"{rel}: {suffix} is not a file a model folder needs (weights in .safetensors, "
            "settings in .json, tokenizers in .json/.txt/.model); remove it",
            rel,
        )
    if suffix == ".json" and size > _json_limit(rel):
        limit = _json_limit(rel)
        raise _invalid(f"{rel} holds {size} bytes, more than a JSON file may ({limit})", rel)


def _json_limit(rel: str) -> int:
    if PurePosixPath(rel).name == "tokenizer.json":
        return _MAX_TOKENIZER_JSON_BYTES
    return _MAX_JSON_BYTES


def _read_configs(root: Path, present: set[str]) -> dict[str, dict[str, Any]]:
    if "config.json" not in present:
        raise _invalid(
            "config.json is missing: a Hugging Face model folder has it at its top (write it "
            "with save_pretrained(folder))",
            "config.json",
        )
    return {name: _read_object(root / name, name) for name in _CONFIGS if name in present}


def _read_object(path: Path, rel: str) -> dict[str, Any]:
    limit = _json_limit(rel)
    with open(path, "rb") as fh:
        raw = fh.read(limit + 1)  # bounded again: the file may have grown since it was listed
    if len(raw) > limit:
        raise _invalid(f"{rel} holds more than {limit} bytes, more than a JSON file may", rel)
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # RecursionError: [[[[... nested too deep
        raise _invalid(f"{rel} is not valid JSON ({exc})", rel) from exc
    if not isinstance(data, dict):
        raise _invalid(f"{rel} is not a JSON object", rel)
    return data


def _refuse_custom_code(configs: dict[str, dict[str, Any]]) -> None:
    for rel, data in configs.items():
        for key in _CUSTOM_CODE_KEYS:
            if key in data:
                shown = json.dumps(data[key])[:200]
                raise _invalid(
                    f"{rel} needs custom code ({key}: {shown}), which trainserve never runs "
                    "(trust_remote_code): use a model whose architecture transformers ships",
                    rel,
                )
        if data.get("trust_remote_code") is True:
            raise _invalid(
                f"{rel} sets trust_remote_code: true; trainserve never runs a model's own code",
                rel,
            )


def _family(model_type: str) -> str:
    family = family_of(model_type)
    if family is None:
        raise _invalid(
            f"model_type {model_type!r} is not a family trainserve fine-tunes ({_FAMILIES})",
            "config.json",
        )
    return family


def _model_type(config: dict[str, Any]) -> str:
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise _invalid(
            "config.json has no string 'model_type': write it with transformers' "
            "save_pretrained(), which names the architecture there",
            "config.json",
        )
    return model_type


def safetensors_parameters(path: Path, rel: str) -> int:
    """The number of values in a .safetensors file, from its header alone: the 8-byte
    little-endian length of a JSON header, then the tensors' bytes, which the header must
    describe exactly (as safetensors itself requires), so the file holds what it claims."""
    size = os.lstat(path).st_size
    with open(path, "rb") as fh:
        length = int.from_bytes(fh.read(8), "little")
        if size < 8 or length > min(_MAX_SAFETENSORS_HEADER, size - 8):
            raise _bad_weights(rel, f"a header length of {length} bytes in a file of {size}")
        raw = fh.read(length)
    try:
        header = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise _bad_weights(rel, f"a header that is not JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise _bad_weights(rel, "a header that is not a JSON object")
    return _count_values(header, size - 8 - length, rel)


def _bad_weights(rel: str, what: str) -> Unprocessable:
    return _invalid(
        f"{rel} is not a valid .safetensors file: it has {what}; save it again with "
        "save_pretrained() or safetensors",
        rel,
    )


def _count_values(header: dict[str, Any], body: int, rel: str) -> int:
    spans = []
    for name, entry in header.items():
        if name != "__metadata__":  # free-form strings, no tensor
            spans.append(_tensor_span(name, entry, rel))
    at = 0
    for begin, end, _ in sorted(spans):
        # Back to back from 0, as safetensors requires: overlapping tensors could make a small
        # file huge in memory, and offsets past the end describe bytes that are not there.
        if end > body:
            raise _bad_weights(rel, f"tensors past its end (byte {end} of {body}): truncated")
        if begin != at:
            raise _bad_weights(rel, f"tensors that overlap or leave a gap at byte {at}")
        at = end
    if at != body:
        raise _bad_weights(rel, f"{body - at} bytes after its last tensor")
    return sum(count for _, _, count in spans)


def _tensor_span(name: str, entry: Any, rel: str) -> tuple[int, int, int]:
    """(begin, end, number of values) of one tensor's header entry, checked."""
    if not isinstance(entry, dict):
        raise _bad_weights(rel, f"tensor {name!r} described by {type(entry).__name__}")
    if entry.get("dtype") not in _DTYPE_BYTES:
        raise _bad_weights(rel, f"tensor {name!r} of an unknown dtype {entry.get('dtype')!r}")
    shape, offsets = entry.get("shape"), entry.get("data_offsets")
    if not _naturals(shape):
        raise _bad_weights(rel, f"tensor {name!r} whose shape is not a list of integers ≥ 0")
    if not (_naturals(offsets) and len(offsets) == 2 and offsets[0] <= offsets[1]):
        raise _bad_weights(rel, f"tensor {name!r} whose data_offsets are not [begin, end]")
    count = math.prod(shape)
    need = count * _DTYPE_BYTES[entry["dtype"]]
    if offsets[1] - offsets[0] != need:
        got = offsets[1] - offsets[0]
        raise _bad_weights(rel, f"tensor {name!r} of {got} bytes where its shape needs {need}")
    return offsets[0], offsets[1], count


def _naturals(value: object) -> TypeGuard[list[int]]:
    # type() is int, not isinstance(): JSON's true would pass as 1.
    return isinstance(value, list) and all(type(v) is int and v >= 0 for v in value)
