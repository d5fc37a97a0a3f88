"""`memex ingest`: files and directories into a tenant's documents, conversations and summaries."""

from memex.ingest.run import IngestReport, ingest

__all__ = ["IngestReport", "ingest"]
