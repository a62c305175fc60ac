"""The kinds of network and of task a job names: shared by the job spec (app/schemas), the
engine (app/ml) and the worker, and so here, below all of them, importing nothing."""

import enum


class Arch(enum.StrEnum):
    mlp = "mlp"  # tabular (or flattened) features
    cnn = "cnn"  # images
    resnet = "resnet"  # images
    text = "text"  # strings


IMAGE_ARCHS = frozenset({Arch.cnn, Arch.resnet})


class Task(enum.StrEnum):
    classification = "classification"
    regression = "regression"
