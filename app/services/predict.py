"""Predict: resolve the version, load it through the cache, check rows, run the model."""

from typing import Any

from sqlalchemy.orm import Session

from app.core.config import Settings
from app.core.errors import PayloadTooLarge
from app.schemas.model import PredictResponse
from app.services import registry
from app.serving.cache import ModelCache
from app.serving.predictor import model_input
from app.serving.predictor import predict as run_model


def predict(
    session: Session,
    cache: ModelCache,
    settings: Settings,
    name: str,
    ref: str | None,
    inputs: list[Any],
) -> PredictResponse:
    if len(inputs) > settings.max_predict_rows:
        raise PayloadTooLarge(
            f"inputs: at most {settings.max_predict_rows} rows per request", code="too_many_rows"
        )
    version = registry.resolve(session, name, ref)
    bundle = cache.get(
        version.id, settings.artifacts_dir / version.checkpoint_path, version.checkpoint_sha256
    )
    result = run_model(bundle, model_input(bundle, inputs))
    return PredictResponse(
        model_name=name,
        model_version=version.version,
        job_id=version.job_id,
        predictions=result.predictions,
        probabilities=result.probabilities,
    )
