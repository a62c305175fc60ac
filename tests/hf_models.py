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
