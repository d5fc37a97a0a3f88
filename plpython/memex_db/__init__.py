"""memex_db: the Python that runs inside PostgreSQL."""

__version__ = "0.1.0"
