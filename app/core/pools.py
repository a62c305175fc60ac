"""Worker pools: which Celery queue a job's pool is, shared by the API (which sends to it),
the reaper (which resends to it) and `trainserve worker --pool` (which consumes it).

The default pool (a spec without `training.pool`, a worker without `--pool`) keeps the
settings' queue_name as it always was, so `trainserve up` and existing deployments see no
change; a named pool gets `<queue_name>.pool.<name>`.
"""

POOL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
DEFAULT_POOL = "default"


def pool_key(pool: str | None) -> str | None:
    """How a pool is stored: None for the default pool, however it was named."""
    return None if pool in (None, "", DEFAULT_POOL) else pool


def pool_label(pool: str | None) -> str:
    """How a pool is shown: its name, 'default' for the default pool."""
    return pool_key(pool) or DEFAULT_POOL


def queue_for(queue_name: str, pool: str | None) -> str:
    """The Celery queue of a pool."""
    key = pool_key(pool)
    return queue_name if key is None else f"{queue_name}.pool.{key}"
