"""What a store raises. Plain exceptions, like CheckpointError and StoredDatasetError: the
service that asked knows what a missing or corrupt artifact means for its request (a model
that is unavailable, a dataset that cannot be trained on) and turns it into an AppError."""


class StoreError(Exception):
    """Anything the artifact store refuses or cannot do."""


class InvalidKey(StoreError, ValueError):
    """A key that is not a plain relative path under the store: refused before any I/O."""


class ArtifactNotFound(StoreError):
    def __init__(self, key: str, where: str) -> None:
        super().__init__(f"artifact '{key}' does not exist in {where}")
        self.key = key


class CorruptArtifact(StoreError):
    """The bytes under a key are not the ones whose sha256 was recorded when it was put."""

    def __init__(self, key: str, expected: str, actual: str, where: str) -> None:
        super().__init__(
            f"artifact '{key}' in {where} is corrupt: its sha256 is {actual}, "
            f"but {expected} was recorded when it was stored; it was not used"
        )
        self.key, self.expected, self.actual = key, expected, actual


class StoreUnavailable(StoreError):
    """The store could not be reached or answered with an error, after the retries."""
