"""The installed trainserve's version, from its distribution's metadata (pyproject.toml)."""

from importlib.metadata import PackageNotFoundError, version

try:
    VERSION = version("trainserve")
except PackageNotFoundError:  # run from a checkout that was never installed
    VERSION = "0+unknown"
