"""Tiny Hugging Face models built from configs and saved as base folders (save_pretrained),
for tests that need a GPT-style, BERT-style or vision base without a real one's megabytes."""

from pathlib import Path

import torch

WORDS = ["good", "bad", "film", "great", "awful", "plot", "the", "was", "a", "movie"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]


def tiny_bert(folder: Path, seed: int = 0) -> Path:
    """A random 2-layer BERT (width 32) with a real WordPiece tokenizer."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    # transformers 5 reads the vocabulary from `vocab` (vocab_file is silently ignored: all [UNK])
    BertTokenizerFast(vocab=str(folder / "vocab.txt")).save_pretrained(folder)
    config = BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(folder)
    return folder


COLOURS = ["red", "green", "blue", "yellow", "black", "white"]


def tiny_gpt2(folder: Path, seed: int = 0) -> Path:
    """A random 2-layer GPT-2 (width 32) with a word-level tokenizer over COLOURS (and an
    end-of-text token), saved as a base folder: small enough to learn a pattern in seconds."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {word: i for i, word in enumerate(["<unk>", "<eos>", *COLOURS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>")
    fast.save_pretrained(folder)
    config = GPT2Config(
        vocab_size=len(vocab), n_positions=1024, n_embd=32, n_layer=2, n_head=2,
        bos_token_id=1, eos_token_id=1,
    )  # fmt: skip
    torch.manual_seed(seed)
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


def tiny_vit(folder: Path, seed: int = 0) -> Path:
    """A random 2-layer ViT (width 32) on 16x16 images in 4x4 patches, saved as a classifier's
    backbone is (no pooler weights), with a processor config of size 16 and mean/std 0.5."""
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    folder.mkdir(parents=True, exist_ok=True)
    config = ViTConfig(
        image_size=16, patch_size=4, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=37,
    )  # fmt: skip
    torch.manual_seed(seed)
    ViTModel(config, add_pooling_layer=False).save_pretrained(folder)
    ViTImageProcessor(
        size={"height": 16, "width": 16}, image_mean=[0.5] * 3, image_std=[0.5] * 3
    ).save_pretrained(folder)
    return folder


def tiny_resnet(folder: Path, seed: int = 0) -> Path:
    """A random 2-stage ResNet (widths 8 and 16, BatchNorm throughout) whose processor takes
    12x12 images (ConvNeXt's processor, as Microsoft's ResNets ship, at ImageNet's statistics).
    Its BatchNorm running statistics are set away from the defaults (mean 0, variance 1), as a
    pretrained base's are, so a test sees whether training changed them."""
    from transformers import ConvNextImageProcessor, ResNetConfig, ResNetModel

    folder.mkdir(parents=True, exist_ok=True)
    config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")
    torch.manual_seed(seed)
    model = ResNetModel(config)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    model.save_pretrained(folder)
    ConvNextImageProcessor(
        size={"shortest_edge": 12},
        crop_pct=None,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    ).save_pretrained(folder)
    return folder
