"""The kinds of network and of task a job names: shared by the job spec (app/schemas), the
engine (app/ml) and the worker, and so here, below all of them, importing nothing."""

import enum


class Arch(enum.StrEnum):
    mlp = "mlp"  # tabular (or flattened) features
    cnn = "cnn"  # images
    resnet = "resnet"  # images
    text = "text"  # strings
    pretrained = "pretrained"  # a Hugging Face base model, fine-tuned (app/ml/pretrained.py)


IMAGE_ARCHS = frozenset({Arch.cnn, Arch.resnet})


class Task(enum.StrEnum):
    classification = "classification"
    regression = "regression"
    generation = "generation"  # text to continue: a `text` dataset, a pretrained causal-lm head


class Head(enum.StrEnum):
    """What a pretrained base is fine-tuned to answer."""

    classification = "classification"
    regression = "regression"
    causal_lm = "causal-lm"  # text generation (GPT-style bases)


class Finetune(enum.StrEnum):
    full = "full"  # every weight trains
    head = "head"  # the base is frozen; only the new head trains
    lora = "lora"  # low-rank adapters in the base's attention, and the head (peft)


class Family(enum.StrEnum):
    """The kinds of pretrained base (app/base_models/folder.py tells them apart)."""

    text_encoder = "text-encoder"  # BERT-style: classification and regression on text
    text_decoder = "text-decoder"  # GPT-style: generation, or classification on text
    vision = "vision"  # ViT, ResNet, ConvNeXt: classification and regression on images
