"""LitServe server for bench/predict.py: the MLP 784-128-10 whose weights the bench saved,
with LitServe's request batching. POST /predict {"inputs": [[784 floats], ...]} answers
{"predictions": [...], "probabilities": [[...]]}, as trainserve answers.

    python bench/predict_assets/litserve_server.py --weights mlp.pt --port 8001
"""

import argparse
from typing import Any

import litserve as ls
import torch
from torch import nn


class MLPAPI(ls.LitAPI):
    def __init__(self, weights: str, max_batch_size: int, batch_timeout: float) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout)
        self.weights = weights

    def setup(self, device: str) -> None:
        torch.set_num_threads(1)  # the server has one core (bench/predict.py pins it)
        model = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
        model.load_state_dict(torch.load(self.weights, weights_only=True))
        self.model = model.eval()

    def decode_request(self, request: dict[str, Any]) -> torch.Tensor:
        return torch.tensor(request["inputs"], dtype=torch.float32)  # (rows, 784)

    def batch(self, inputs: list[torch.Tensor]) -> tuple[torch.Tensor, list[int]]:
        return torch.cat(inputs), [int(x.shape[0]) for x in inputs]

    def predict(self, batch: tuple[torch.Tensor, list[int]]) -> list[dict[str, Any]]:
        x, sizes = batch
        with torch.inference_mode():
            probs = torch.softmax(self.model(x), dim=1)  # (rows, 10)
        labels, values = probs.argmax(dim=1).tolist(), probs.tolist()
        out, start = [], 0
        for size in sizes:
            end = start + size
            out.append({"predictions": labels[start:end], "probabilities": values[start:end]})
            start = end
        return out

    def unbatch(self, output: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return output

    def encode_response(self, output: dict[str, Any]) -> dict[str, Any]:
        return output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True, help="a torch.save'd state_dict")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--batch-timeout", type=float, default=0.005, help="seconds")
    args = parser.parse_args()
    api = MLPAPI(args.weights, args.max_batch_size, args.batch_timeout)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1)
    server.run(host="127.0.0.1", port=args.port, num_api_servers=1, generate_client_file=False)


if __name__ == "__main__":
    main()
