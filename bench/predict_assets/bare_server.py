"""The bare endpoint for bench/predict.py: what one writes with FastAPI and torch alone.

One `async def` route, a pydantic body model, the MLP 784-128-10 whose weights the bench
saved, one forward pass per request under inference_mode (no batching), served by uvicorn
with uvloop and httptools and no access log. POST /predict {"inputs": [[784 floats], ...]}
answers {"predictions": [...], "probabilities": [[...]]}, as trainserve answers. It runs
from the service's own venv: nothing here that .venv lacks.

    .venv/bin/python bench/predict_assets/bare_server.py --weights mlp.pt --port 8002
"""

import argparse
from typing import Any

import torch
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from torch import nn


class PredictBody(BaseModel):
    inputs: list[list[float]]


def make_app(state_dict: dict[str, torch.Tensor]) -> FastAPI:
    model = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
    model.load_state_dict(state_dict)
    model.eval()
    app = FastAPI()

    @app.post("/predict")
    async def predict(body: PredictBody) -> dict[str, Any]:
        with torch.inference_mode():
            probs = torch.softmax(model(torch.tensor(body.inputs)), dim=1)
        return {"predictions": probs.argmax(dim=1).tolist(), "probabilities": probs.tolist()}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True, help="a torch.save'd state_dict")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)  # the server has one core (bench/predict.py pins it)
    serve(make_app(torch.load(args.weights, weights_only=True)), args.port)


def serve(app: FastAPI, port: int) -> None:
    """uvicorn as the bench's FastAPI endpoints run: uvloop, httptools, no access log."""
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
