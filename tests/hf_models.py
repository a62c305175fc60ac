"""Tiny Hugging Face models built from configs and saved as base folders (save_pretrained),
for tests that need a GPT-style or BERT-style base without the real MiniLM's 90 MB."""

from pathlib import Path

import torch

WORDS = ["good", "bad", "film", "great", "awful", "plot", "the", "was", "a", "movie"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]


def tiny_bert(folder: Path, seed: int = 0) -> Path:
    """A random 2-layer BERT (width 32) with a real WordPiece tokenizer."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
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
