"""`memex ingest`: files and directories into a tenant's documents, conversations and summaries."""

from memex.ingest.run import IngestReport, ingest, pending_after_ingest

__all__ = ["IngestReport", "ingest", "pending_after_ingest"]
