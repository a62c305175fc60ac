"""TorchServe handler for bench/predict.py: the MLP 784-128-10 whose weights the bench saved.

TorchServe hands `handle` a batch of requests (up to batchSize, waiting up to maxBatchDelay).
Each body is {"inputs": [[784 floats], ...]}; the rows of all of them run as one forward pass
and each request gets {"predictions": [...], "probabilities": [[...]]}, as trainserve answers.
"""

import json
import os
from typing import Any

import torch
from torch import nn


class MLPHandler:
    def __init__(self) -> None:
        self.model: nn.Module | None = None

    def initialize(self, context: Any) -> None:
        torch.set_num_threads(1)  # the server has one core (bench/predict.py pins it)
        model_dir = context.system_properties["model_dir"]
        weights = os.path.join(model_dir, context.manifest["model"]["serializedFile"])
        model = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
        model.load_state_dict(torch.load(weights, weights_only=True))
        self.model = model.eval()

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[dict[str, Any]]:
        assert self.model is not None
        xs = [torch.tensor(_body(item)["inputs"], dtype=torch.float32) for item in data]
        with torch.inference_mode():
            probs = torch.softmax(self.model(torch.cat(xs)), dim=1)  # (rows, 10)
        labels, values = probs.argmax(dim=1).tolist(), probs.tolist()
        out, start = [], 0
        for x in xs:
            end = start + x.shape[0]
            out.append({"predictions": labels[start:end], "probabilities": values[start:end]})
            start = end
        return out


def _body(item: dict[str, Any]) -> dict[str, Any]:
    # TorchServe decodes an application/json body itself; anything else arrives as bytes.
    body = item.get("body", item.get("data"))
    if isinstance(body, bytes | bytearray):
        body = json.loads(body)
    assert isinstance(body, dict)
    return body
