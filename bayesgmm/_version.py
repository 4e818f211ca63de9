"""The package's version, read from its installed metadata (written once, in pyproject.toml)."""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _metadata_version

try:
    version = _metadata_version("bayesgmm")
except PackageNotFoundError:  # run from a source tree that was never installed
    version = "0+unknown"
