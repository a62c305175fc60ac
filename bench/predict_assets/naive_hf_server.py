"""The naive endpoint for bench/finetune.py: a fine-tuned text classifier served with FastAPI and
transformers alone, as one writes it without a serving framework.

The classifier is the one a plain transformers user builds: AutoModel, mean pooling over the
real tokens (sentence-transformers' rule) and a Linear head. The backbone comes from the base's
folder, the head's weights from a trainserve version's checkpoint (a safetensors file; a `head`
fine-tune changed nothing else). One `async def` route: each request is tokenized and run
through the model on its own, under inference_mode (no batching). POST /predict
{"inputs": ["text", ...]} answers {"predictions": [label, ...], "probabilities": [[...]]}, as
trainserve answers. bench/finetune.py's plain training loop trains the same classifier.

It runs as a module of the bench folder (it shares bare_server.py's uvicorn settings):

    PYTHONPATH=bench .venv/bin/python -m predict_assets.naive_hf_server --base MODEL_DIR \
        --checkpoint model.safetensors --labels neg,pos --max-len 32 --port 8002
"""

import argparse
from pathlib import Path
from typing import Any

import torch
from fastapi import FastAPI
from pydantic import BaseModel
from safetensors.torch import load_file
from torch import nn
from transformers import AutoModel, AutoTokenizer

# isort: split
# the bench folder's own modules (run as a module of it: see above)
from predict_assets.bare_server import serve


class MeanPoolClassifier(nn.Module):
    """A transformers encoder, mean pooling over the real tokens, a Linear head."""

    def __init__(self, backbone: nn.Module, labels: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.config.hidden_size, labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask)
        mask = attention_mask.unsqueeze(-1).float()  # (N, T, 1): 1 for real tokens
        pooled = (out.last_hidden_state * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return self.head(pooled)


class PredictBody(BaseModel):
    inputs: list[str]


def load_classifier(base: Path, checkpoint: Path, labels: int) -> MeanPoolClassifier:
    """The base's encoder with the head a trainserve version stored (`model.head.*`)."""
    model = MeanPoolClassifier(AutoModel.from_pretrained(base), labels)
    stored = load_file(checkpoint)
    head = {name: stored[f"model.head.{name}"] for name in ("weight", "bias")}
    model.head.load_state_dict(head)
    return model.eval()


def make_app(base: Path, checkpoint: Path, labels: list[str], max_len: int) -> FastAPI:
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = load_classifier(base, checkpoint, len(labels))
    app = FastAPI()

    @app.post("/predict")
    async def predict(body: PredictBody) -> dict[str, Any]:
        enc = tokenizer(
            body.inputs, padding=True, truncation=True, max_length=max_len, return_tensors="pt"
        )
        with torch.inference_mode():
            logits = model(enc["input_ids"], enc["attention_mask"])
            probs = torch.softmax(logits, dim=1)
        predictions = [labels[i] for i in probs.argmax(dim=1).tolist()]
        return {"predictions": predictions, "probabilities": probs.tolist()}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, required=True, help="the base model's folder")
    parser.add_argument("--checkpoint", type=Path, required=True, help="the version's file")
    parser.add_argument("--labels", required=True, help="comma-separated, in class order")
    parser.add_argument("--max-len", type=int, required=True, help="tokens per text, at most")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)  # the server has one core (bench/finetune.py pins it)
    serve(make_app(args.base, args.checkpoint, args.labels.split(","), args.max_len), args.port)


if __name__ == "__main__":
    main()
