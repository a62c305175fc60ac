"""Scores of a model's predictions, computed from logits on the device with one host sync
per call. Named scores, not metrics: "metrics" elsewhere means the HTTP and Prometheus
counters (app/api/metrics.py); these are what a job records as its metrics per epoch.

Classification: accuracy, precision / recall / F1 (macro and per class; a class never
predicted or never present scores 0, as scikit-learn's zero_division=0), and the confusion
matrix. Regression: MSE, MAE and R², in the target's own units.
"""

from typing import Any

import torch


def classification_scores(
    logits: torch.Tensor, y: torch.Tensor, classes: list[Any], prefix: str
) -> tuple[dict[str, float], dict[str, Any]]:
    """logits (N, K), y (N,) → (scalar metrics, report with the confusion matrix)."""
    k = len(classes)
    pred = logits.argmax(dim=1)
    confusion = torch.bincount(y * k + pred, minlength=k * k).reshape(k, k).cpu()  # rows: true
    tp = confusion.diag().double()
    precision = _ratio(tp, confusion.sum(dim=0).double())
    recall = _ratio(tp, confusion.sum(dim=1).double())
    f1 = _ratio(2 * precision * recall, precision + recall)
    scalars = {
        f"{prefix}_accuracy": float(tp.sum() / max(len(y), 1)),
        f"{prefix}_precision_macro": float(precision.mean()),
        f"{prefix}_recall_macro": float(recall.mean()),
        f"{prefix}_f1_macro": float(f1.mean()),
    }
    for i, label in enumerate(classes):
        scalars[f"{prefix}_recall[{_label(label)}]"] = float(recall[i])
        scalars[f"{prefix}_f1[{_label(label)}]"] = float(f1[i])
    report = {
        "classes": list(classes),
        "confusion_matrix": confusion.tolist(),
        "per_class": {
            str(label): {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(confusion[i].sum()),
            }
            for i, label in enumerate(classes)
        },
    }
    return scalars, report


def regression_scores(
    pred: torch.Tensor, y: torch.Tensor, target_std: float, prefix: str
) -> dict[str, float]:
    """pred, y: (N, 1) standardized targets; target_std turns errors back into target units."""
    residual = pred.float() - y
    variance = ((y - y.mean()) ** 2).mean().clamp_min(1e-12)
    mse = (residual**2).mean()
    return {
        f"{prefix}_mse": float(mse) * target_std**2,
        f"{prefix}_mae": float(residual.abs().mean()) * target_std,
        # R² does not depend on the target's scale.
        f"{prefix}_r2": float(1 - mse / variance),
    }


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    return torch.where(den > 0, num / den.clamp_min(1e-12), torch.zeros_like(num))


def _label(label: Any) -> str:
    # Metric names are bounded (100 chars); a label is a name fragment, not free text.
    return str(label)[:40]
