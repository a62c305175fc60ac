"""The Hugging Face folder of a fine-tuned vision base (app/ml/export.py writes it): what its
trainserve.json says about pixels and pooling, and its README's recipe, which repeats what
predict does to an image (decode at the stored size, then the base's resize and normalize)."""

from typing import Any

import torch

from app.ml.preprocessing import Preprocessor
from app.ml.pretrained import VisionModel

POOLING = {
    "pooler": "pooled = out.pooler_output.flatten(1)  # the base's own pooling",
    "class-token": "pooled = out.last_hidden_state[:, 0]  # the class token",
}
README = """# {name} v{version}, exported by trainserve

The backbone is {base} with the fine-tuned weights (LoRA merged); the head trainserve trained
on it is head.safetensors, applied as trainserve.json says. With `folder` this folder and
`paths` a list of PNG or JPEG files, this answers what POST /v1/models/{name}/predict answers
for those images (transformers may say the backbone's pooler weights are newly initialized
when it is not read: the head never reads it):

```python
import json, numpy as np, torch
from PIL import Image, ImageOps
from safetensors.torch import load_file
from transformers import AutoModel
about = json.load(open(f"{{folder}}/trainserve.json"))
head = load_file(f"{{folder}}/head.safetensors")  # the Linear on the pooled features
model = AutoModel.from_pretrained(folder).eval()
c, s, _ = about["input_shape"]  # each image is first made (C, S, S), as trainserve stores them
pre = about["image"]  # then resized and normalized as the base's own processor says
def pixels(path):
    img = ImageOps.exif_transpose(Image.open(path)).convert("L" if c == 1 else "RGB")
    return np.asarray(img.resize((s, s), Image.BILINEAR)).reshape(s, s, c).transpose(2, 0, 1)
x = torch.tensor(np.stack([pixels(p) for p in paths])).float()  # (N, C, S, S) in 0..255
x = torch.nn.functional.interpolate(x, size=pre["size"], mode="bilinear", antialias=True)
x = x.expand(-1, pre["channels"], -1, -1) * pre["rescale"]
if pre["normalize"]:
    mean, std = (torch.tensor(pre[k]).view(1, -1, 1, 1) for k in ("mean", "std"))
    x = (x - mean) / std
with torch.no_grad():
    out = model(pixel_values=x)
{pooling}
out = pooled @ head["weight"].T + head["bias"]
{answer}
```
"""


def image_about(model: VisionModel, pre: Preprocessor) -> dict[str, Any]:
    """trainserve.json's pixels and pooling: the stored image shape, the base's resize and
    normalization, and which of the backbone's outputs the head reads."""
    assert pre.base_image is not None
    return {
        "input_shape": pre.input_shape,
        "image": pre.base_image.to_json(),
        "pooling": pooling(model, pre),
    }


def pooling(model: VisionModel, pre: Preprocessor) -> str:
    """What VisionModel pooled, seen from one forward pass of a blank image: a ViT whose pooler
    was dropped would get a random one back where the folder is loaded, so the recipe must
    name the class token rather than read whatever pooler_output it finds."""
    stats = pre.base_image
    assert stats is not None
    blank = torch.zeros(1, stats.channels, *stats.size, device=next(model.parameters()).device)
    with torch.no_grad():
        out = model.backbone(pixel_values=blank)
    return "pooler" if getattr(out, "pooler_output", None) is not None else "class-token"


def vision_readme(about: dict[str, Any], answer: str) -> str:
    return README.format(
        name=about["model_name"],
        version=about["version"],
        base=about["base"]["name"],
        pooling=POOLING[about["pooling"]],
        answer=answer,
    )
