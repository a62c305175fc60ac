"""Markers every tier uses: `gpu` tests run where CUDA is, and say what they wait for where
it is not (these machines have no GPU; the GPU checks run on a lent H200)."""

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not any(item.get_closest_marker("gpu") for item in items):
        return
    import torch  # only when a gpu test is collected: the unit tier imports torch anyway

    if torch.cuda.is_available():
        return
    waits = pytest.mark.skip(reason="waits for a CUDA GPU: runs on the GPU machine")
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(waits)
