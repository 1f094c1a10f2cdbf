"""soundtrail: provenance-first data-to-model pipeline for music generation."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("soundtrail")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
