"""memex: the CLI and installer. The version is memex_db's, so both always agree."""

from memex_db import __version__

__all__ = ["__version__"]
