"""The fine-tuning engine on real Hugging Face models built from configs (saved with
save_pretrained, loaded back through the same path an uploaded base takes): which weights
train in each mode, what a version stores, and that a stored version answers as it did."""

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from transformers import GPT2Config, GPT2Model

from app.core.kinds import Task
from app.ml import pretrained
from app.ml.preprocessing import Preprocessor
from tests.hf_models import VOCAB, tiny_bert
from worker.training.loop import LoopOptions, Scoring, Splits, fit


@pytest.fixture(scope="module")
def bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_bert(tmp_path_factory.mktemp("bert"))


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory: pytest.TempPathFactory, bert: Path) -> Path:
    folder = tmp_path_factory.mktemp("gpt2")
    torch.manual_seed(0)
    GPT2Model(GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=len(VOCAB))).save_pretrained(
        folder
    )
    from transformers import BertTokenizerFast

    BertTokenizerFast.from_pretrained(bert).save_pretrained(folder)
    return folder


def options(
    finetune: str, family: str = "text-encoder", head: str = "classification"
) -> dict[str, Any]:
    return {
        "base": {"id": "b", "sha256": "", "source": "upload", "folder": "b/model"},
        "family": family,
        "head": head,
        "finetune": finetune,
        "lora": {"r": 4, "alpha": 8.0, "dropout": 0.0},
        "dropout": 0.0,
    }


def texts_and_labels() -> tuple[list[str], torch.Tensor]:
    texts = ["good film", "great plot", "bad film", "awful plot"] * 8
    return texts, torch.tensor([1, 1, 0, 0] * 8)


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int = 3) -> None:
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=0.01)
    opts = LoopOptions(
        Scoring(Task.classification, [0, 1]),
        epochs,
        batch_size=8,
        transform=lambda b, _t: pretrained.trim(b),
    )
    fit(
        model,
        optimizer,
        nn.CrossEntropyLoss(),
        Splits(x, y, x[:8], y[:8]),
        opts,
        torch.Generator().manual_seed(0),
        on_step=lambda rows: False,
        on_epoch_end=lambda result: None,
    )


def test_the_base_tokenizer_stacks_ids_and_mask_and_trim_cuts_to_the_longest(bert: Path) -> None:
    pre = Preprocessor.fit_base_text(bert, max_len=16)
    x = pre.encode_texts(["good film", "the plot was a great film"])
    assert x.shape == (2, 2, 16) and x.dtype == torch.int64
    assert x[:, 1].sum(dim=1).tolist() == [4, 8]  # [CLS] ... [SEP]
    assert 1 not in x[:, 0].tolist()[0][:4]  # every word is in the vocabulary: no [UNK]
    assert pre.batch(x).shape == (2, 2, 8)
    meta = pre.meta()
    again = Preprocessor.load(meta, {}, bert)
    assert torch.equal(again.encode_texts(["good film"]), x[:1])
    with pytest.raises(ValueError, match="base's folder"):
        Preprocessor.load(meta, {})


@pytest.mark.parametrize(
    ("finetune", "trains_base"),
    [("full", True), ("head", False), ("lora", False)],
)
def test_each_mode_trains_what_it_says_and_a_stored_version_answers_the_same(
    bert: Path, finetune: str, trains_base: bool
) -> None:
    pre = Preprocessor.fit_base_text(bert, max_len=16)
    texts, y = texts_and_labels()
    x = pre.encode_texts(texts)
    torch.manual_seed(0)
    model = pretrained.build_finetune(bert, 2, options(finetune))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trained = pretrained.trainable_names(model)
    train(model, x, y)
    after = model.state_dict()
    changed = {k for k in after if not torch.equal(before[k], after[k])}
    assert {"head.weight", "head.bias"} <= changed
    base_changed = {k for k in changed if not k.startswith("head.") and "lora_" not in k}
    assert bool(base_changed) == trains_base
    if finetune == "lora":
        adapters = {k for k in trained if "lora_" in k}
        assert adapters and trained == adapters | {"head.weight", "head.bias"}
        # r x (in + out) for query and value in each of 2 layers of width 32
        assert (
            sum(p.numel() for n, p in model.named_parameters() if n in adapters) == 2 * 2 * 4 * 64
        )
    stored = pretrained.stored_tensors(model)
    total = sum(v.numel() for v in model.state_dict().values())
    kept = sum(v.numel() for v in stored.values())
    assert (kept == total) if finetune == "full" else (kept < total / 10)

    model.eval()
    loaded = pretrained.load_finetuned(bert, 2, options(finetune), stored).eval()
    batch = pre.batch(x[:6])
    with torch.no_grad():
        assert torch.allclose(model(batch), loaded(batch), atol=1e-5)
    if finetune == "lora":  # merged for serving: a plain model, no adapters left
        assert not any("lora_" in k for k in loaded.state_dict())


def test_stored_weights_that_do_not_fit_the_base_are_refused(bert: Path) -> None:
    model = pretrained.build_finetune(bert, 2, options("head"))
    stored = pretrained.stored_tensors(model)
    with pytest.raises(ValueError, match="unexpected"):
        pretrained.load_finetuned(
            bert, 2, options("head"), stored | {"extra.weight": torch.zeros(1)}
        )
    with pytest.raises(ValueError, match="missing"):
        pretrained.load_finetuned(bert, 2, options("head"), {})
    with pytest.raises(RuntimeError, match="size mismatch"):
        pretrained.load_finetuned(bert, 3, options("head"), stored)  # 3 classes: the head differs


def test_a_decoder_pools_its_last_real_token(gpt2: Path) -> None:
    pre = Preprocessor.fit_base_text(gpt2, max_len=12)
    model = pretrained.build_finetune(gpt2, 2, options("full", family="text-decoder")).eval()
    assert model.pooling == "last"
    x = pre.encode_texts(["good film", "good film the plot"])
    with torch.no_grad():
        padded = model(x)  # padded to 12
        alone = model(pre.batch(x[:1]))  # trimmed to its own length
    assert torch.allclose(padded[0], alone[0], atol=1e-5)  # padding after the text changes nothing


def test_the_head_has_its_own_rate_and_frozen_weights_get_no_optimizer_state(bert: Path) -> None:
    from app.schemas.job import JobSpec
    from worker.training.setup import make_optimizer

    model = pretrained.build_finetune(bert, 2, options("head"))
    spec = JobSpec.model_validate(
        {
            "model_name": "m",
            "dataset": {"id": "d"},
            "model": {"arch": "pretrained", "base": "b", "finetune": "head"},
            "training": {"optimizer": {"name": "adamw", "lr": 1e-4}, "head_lr": 1e-2},
        }
    )
    optimizer = make_optimizer(model, spec)
    assert [g["lr"] for g in optimizer.param_groups] == [1e-2]
    assert sum(len(g["params"]) for g in optimizer.param_groups) == 2  # head weight and bias
    full = pretrained.build_finetune(bert, 2, options("full"))
    spec.model.finetune = "full"  # type: ignore[assignment]
    groups = make_optimizer(full, spec).param_groups
    assert [g["lr"] for g in groups] == [1e-4, 1e-2]


def test_a_warm_start_lays_the_parents_weights_in_before_the_mode(bert: Path) -> None:
    """A parent fine-tuned with LoRA (merged when loaded) starts a child that trains new
    adapters on top of the parent's weights: at the start the child answers as the parent."""
    pre = Preprocessor.fit_base_text(bert, max_len=16)
    texts, y = texts_and_labels()
    x = pre.encode_texts(texts)
    parent = pretrained.build_finetune(bert, 2, options("lora"))
    train(parent, x, y, epochs=1)
    served = pretrained.load_finetuned(bert, 2, options("lora"), pretrained.stored_tensors(parent))
    child = pretrained.build_finetune(bert, 2, options("lora"), initial=served.state_dict())
    assert {n for n in pretrained.trainable_names(child) if "lora_" in n}
    batch = pre.batch(x[:6])
    with torch.no_grad():
        # LoRA's B starts at zero: the child's adapters add nothing yet.
        assert torch.allclose(served.eval()(batch), child.eval()(batch), atol=1e-5)
