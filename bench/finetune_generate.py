"""bench/finetune.py's generate section: tokens/s of trainserve's generation loop
(app/ml/generate.py: one token per step with the key/value cache, sampled from the request's
own generator, the text decoded as it grows, as POST /v1/models/{name}/generate streams it)
next to transformers' own `model.generate` on the same weights, sampling alike.

The model is GPT-2 shaped (GPT2_CONFIG below) with random weights and a 50,257-word
vocabulary, so each step pays GPT-2's logits; no pretrained generator installs offline, and
tokens/s does not depend on what the weights learned. Both loops must make exactly --new-tokens
tokens (min_new_tokens = max_new_tokens), so they do the same work."""

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from app.ml.generate import Sampling, generate

# isort: split
from common import run_line

GPT2_CONFIG = {"n_embd": 384, "n_layer": 6, "n_head": 6, "n_positions": 1024}
VOCABULARY = 50_257
PROMPT_TOKENS = 16
TEMPERATURE, TOP_P = 0.8, 0.9


@dataclass
class Timed:
    name: str
    rounds: list[float]  # seconds per generation
    tokens: int  # per generation

    @property
    def tokens_per_s(self) -> float:
        return self.tokens * len(self.rounds) / sum(self.rounds)


def build(folder: Path) -> tuple[GPT2LMHeadModel, PreTrainedTokenizerFast]:
    words = {f"w{i}": i for i in range(VOCABULARY - 1)} | {"<eos>": VOCABULARY - 1}
    tok = Tokenizer(models.WordLevel(words, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>")
    config = GPT2Config(vocab_size=VOCABULARY, eos_token_id=VOCABULARY - 1, **GPT2_CONFIG)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config).eval()
    model.save_pretrained(folder)  # and load it back, as a base's folder is loaded
    return GPT2LMHeadModel.from_pretrained(folder).eval(), tokenizer


def service(model: GPT2LMHeadModel, tokenizer: PreTrainedTokenizerFast, n: int, seed: int) -> int:
    sampling = Sampling(n, TEMPERATURE, TOP_P, seed, min_new_tokens=n)
    prompt = list(range(1, PROMPT_TOKENS + 1))
    return sum(1 for _ in generate(model, tokenizer, prompt, sampling))


def plain(model: GPT2LMHeadModel, tokenizer: PreTrainedTokenizerFast, n: int, seed: int) -> int:
    torch.manual_seed(seed)
    prompt = torch.arange(1, PROMPT_TOKENS + 1).unsqueeze(0)
    with torch.inference_mode():
        out = model.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            do_sample=True,
            temperature=TEMPERATURE,
            top_p=TOP_P,
            max_new_tokens=n,
            min_new_tokens=n,
            pad_token_id=tokenizer.eos_token_id,
        )
    tokenizer.decode(out[0, PROMPT_TOKENS:])  # the text a user would want, once
    return int(out.shape[1] - PROMPT_TOKENS)


def generate_section(args: argparse.Namespace) -> None:
    n = args.new_tokens
    print(
        f"generation: GPT-2 shaped {GPT2_CONFIG}, vocabulary {VOCABULARY:,}, random weights; "
        f"{PROMPT_TOKENS}-token prompt, {n} new tokens, temperature {TEMPERATURE}, top_p "
        f"{TOP_P}; one warm-up, then {args.rounds} alternating rounds\n",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        model, tokenizer = build(Path(tmp) / "gpt2")
    loops = {"plain model.generate": plain, "trainserve generate": service}
    timed = [Timed(name, [], n) for name in loops]
    for loop in loops.values():
        assert loop(model, tokenizer, 8, 0) == 8  # warm-up, and both make what they are asked
    for turn in range(args.rounds):
        order = list(zip(loops.values(), timed, strict=True))
        for loop, t in order if turn % 2 == 0 else reversed(order):
            began = time.perf_counter()
            assert loop(model, tokenizer, n, turn) == n
            t.rounds.append(time.perf_counter() - began)
    base = timed[0]
    print(f"{'loop':24} {'tokens':>6} {'wall s':>7} {'tokens/s':>9} {'÷ plain':>8}")
    for t in timed:
        print(
            f"{t.name:24} {t.tokens * len(t.rounds):6d} {sum(t.rounds):7.2f} "
            f"{t.tokens_per_s:9.1f} {t.tokens_per_s / base.tokens_per_s:7.2f}x"
        )
    print("each round (s):")
    for t in timed:
        print(run_line(t.name, t.rounds, 25))
    print(flush=True)
