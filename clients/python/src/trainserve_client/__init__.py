"""trainserve's Python client: datasets, training jobs, models and predict over its REST API.
Client for synchronous code, AsyncClient for asyncio; clients/python/README.md shows both."""

from trainserve_client._version import __version__
from trainserve_client.async_client import AsyncClient
from trainserve_client.client import Client
from trainserve_client.errors import (
    AuthError,
    ConflictError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    TrainserveError,
    ValidationError,
)

__all__ = [
    "AsyncClient",
    "AuthError",
    "Client",
    "ConflictError",
    "NotFoundError",
    "RateLimitedError",
    "ServerError",
    "TrainserveError",
    "ValidationError",
    "__version__",
]
