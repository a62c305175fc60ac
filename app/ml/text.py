"""A word-level tokenizer with a vocabulary fitted on the training texts. It is stored in the
checkpoint's JSON header, so predict turns text into the same ids as training did."""

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import torch

PAD, UNK = 0, 1
SCHEME = "words-v1"  # names the rule below; a stored tokenizer with another scheme is refused
# Runs of word characters (any script), or single other non-space characters (punctuation).
TOKEN = re.compile(r"\w+|[^\w\s]")


def tokenize(text: str) -> list[str]:
    return TOKEN.findall(text.lower())


class Tokenizer:
    """ids: 0 padding, 1 unknown, then 2.. for the vocabulary, most frequent token first."""

    def __init__(self, tokens: Sequence[str]) -> None:
        self.tokens = list(tokens)
        self._ids = {token: i for i, token in enumerate(self.tokens, start=2)}
        if len(self._ids) != len(self.tokens):
            raise ValueError("a tokenizer's vocabulary has duplicate tokens")

    @classmethod
    def fit(cls, texts: Iterable[str], vocab_size: int) -> "Tokenizer":
        """Keep the vocab_size - 2 most frequent tokens (padding and unknown take two ids);
        ties go to the token that sorts first, so the same texts give the same vocabulary."""
        if vocab_size < 3:
            raise ValueError("vocab_size must leave room for padding, unknown and one token")
        counts = Counter(token for text in texts for token in tokenize(text))
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        return cls([token for token, _ in ranked[: vocab_size - 2]])

    @property
    def size(self) -> int:
        """The number of ids, padding and unknown included: the embedding table's rows."""
        return len(self.tokens) + 2

    def encode(self, texts: Sequence[str], max_len: int) -> torch.Tensor:
        """(N,) texts → (N, max_len) int64 ids: truncated to max_len, padded with 0."""
        rows: list[int] = []
        for text in texts:
            ids = [self._ids.get(token, UNK) for token in tokenize(text)[:max_len]]
            rows += ids + [PAD] * (max_len - len(ids))
        return torch.tensor(rows, dtype=torch.long).reshape(len(texts), max_len)

    def to_json(self) -> dict[str, Any]:
        return {"scheme": SCHEME, "tokens": list(self.tokens)}

    @classmethod
    def from_json(cls, data: Any) -> "Tokenizer":
        if not isinstance(data, dict) or data.get("scheme") != SCHEME:
            raise ValueError(f"not a {SCHEME} tokenizer")
        tokens = data.get("tokens")
        if not isinstance(tokens, list) or not all(isinstance(t, str) and t for t in tokens):
            raise ValueError("a tokenizer's tokens must be a list of non-empty strings")
        return cls(tokens)
