"""Which torch device a job trains on, or a model version serves on."""

import torch


class UnavailableDevice(RuntimeError):
    """A device was asked for that this process does not have."""


def resolve_device(requested: str, asker: str = "the job") -> torch.device:
    """ "auto" is the GPU when torch sees one, else the CPU; "cuda" without one is refused."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise UnavailableDevice(f"{asker} asks for device 'cuda' and torch sees no CUDA GPU here")
    if requested in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")
