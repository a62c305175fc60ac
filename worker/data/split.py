"""A seeded split, stratified for classification: a spec and seed always hold out the same rows."""

import numpy as np
from sklearn.model_selection import train_test_split


def split_indices(
    y: np.ndarray, fraction: float, seed: int, stratify: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, held-out indices); no held-out rows when fraction is 0."""
    index = np.arange(len(y))
    if fraction <= 0:
        return index, index[:0]
    labels = y if stratify and _stratifiable(y, fraction) else None
    train, held = train_test_split(index, test_size=fraction, random_state=seed, stratify=labels)
    return np.sort(train), np.sort(held)


def _stratifiable(y: np.ndarray, fraction: float) -> bool:
    # Stratifying needs every class at least twice and room for each in the held-out part.
    _, counts = np.unique(y, return_counts=True)
    return bool(counts.min() >= 2 and round(fraction * len(y)) >= len(counts))


def three_way_split(
    y: np.ndarray, validation: float, test: float, seed: int, stratify: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, validation, test) indices. The test rows are set aside first, so adding a test
    split never changes which rows a spec trains on among the rest for a given seed."""
    rest, held_test = split_indices(y, test, seed, stratify)
    if validation <= 0:
        return rest, rest[:0], held_test
    train_pos, val_pos = split_indices(y[rest], validation / (1 - test), seed, stratify)
    return rest[train_pos], rest[val_pos], held_test
