"""Datasets: kinds of data, and the public shapes of uploaded datasets."""

import enum


class DataKind(enum.StrEnum):
    tabular = "tabular"  # rows of numeric features
    image = "image"  # (channels, height, width) pixels
    text = "text"  # strings
