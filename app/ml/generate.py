"""Text generation from a fine-tuned causal LM: one token at a time, with the key/value cache,
sampled from a generator of the request's own (a seed gives the same text every time, even
with other requests generating at once), so each token can be streamed as it comes.

Sampling: temperature 0 takes the most likely token; otherwise the logits are divided by the
temperature and the smallest set of tokens whose probabilities reach top_p is kept (nucleus
sampling, Holtzman et al. 2019)."""

import inspect
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class Sampling:
    max_new_tokens: int
    temperature: float
    top_p: float
    seed: int
    min_new_tokens: int = 0  # end-of-text is not sampled before this many tokens


@dataclass(frozen=True)
class Step:
    token: int
    text: str  # what this token added to the decoded text (may be "" mid-character)


def generate(
    lm: nn.Module, tokenizer: Any, prompt_ids: list[int], sampling: Sampling
) -> Iterator[Step]:
    """Yield each new token and the text it adds, until max_new_tokens or end-of-text."""
    device = next(lm.parameters()).device
    generator = torch.Generator().manual_seed(sampling.seed)
    eos = tokenizer.eos_token_id
    ids = torch.tensor([prompt_ids], device=device)
    cache_arg = _cache_argument(lm)
    past, shown = None, ""
    new_ids: list[int] = []
    with torch.inference_mode():
        for _ in range(sampling.max_new_tokens):
            # With the cache, each step feeds only the newest token.
            step_ids = ids if past is None else ids[:, -1:]
            out = lm(input_ids=step_ids, use_cache=True, **{cache_arg: past})
            past = getattr(out, cache_arg)
            logits = out.logits[0, -1].float().cpu()
            if len(new_ids) < sampling.min_new_tokens and eos is not None:
                logits[eos] = -math.inf
            token = _sample(logits, sampling, generator)
            if token == eos:
                return
            new_ids.append(token)
            text = tokenizer.decode(new_ids, skip_special_tokens=True)
            yield Step(token, text[len(shown) :])
            shown = text
            ids = torch.cat([ids, torch.tensor([[token]], device=device)], dim=1)


def max_positions(lm: nn.Module) -> int | None:
    """The longest sequence (prompt and new tokens) the model has positions for; None when its
    config does not say (rotary positions have no hard limit)."""
    config: Any = getattr(lm, "config", None)
    found = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)
    return int(found) if found else None


def _cache_argument(lm: nn.Module) -> str:
    """transformers 5 names the key/value cache `cache`; earlier ones `past_key_values`."""
    parameters = inspect.signature(lm.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def _sample(logits: torch.Tensor, sampling: Sampling, generator: torch.Generator) -> int:
    if sampling.temperature == 0:
        return int(logits.argmax())
    probs = torch.softmax(logits / sampling.temperature, dim=-1)
    ordered, index = probs.sort(descending=True)
    # Keep each token whose more likely predecessors have not reached top_p yet.
    keep = (ordered.cumsum(0) - ordered) < sampling.top_p
    kept = ordered * keep
    choice = torch.multinomial(kept / kept.sum(), 1, generator=generator)
    return int(index[choice])
