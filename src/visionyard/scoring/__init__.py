"""Batch scoring of files and folders (``visionyard predict``): discovery, a local engine on the
serving runtime, a Ray Data engine (Ray imported only there), JSONL and CSV writers. A file that
cannot be read is a row with its error, never skipped and never fatal for the others."""

from visionyard.scoring.core import Row, Summary, score_paths
from visionyard.scoring.discovery import IMAGE_EXTENSIONS, discover
from visionyard.scoring.local import Plan, score_local
from visionyard.scoring.writers import FORMATS, CsvWriter, JsonlWriter, make_writer, ranked_columns

__all__ = [
    "FORMATS",
    "IMAGE_EXTENSIONS",
    "CsvWriter",
    "JsonlWriter",
    "Plan",
    "Row",
    "Summary",
    "discover",
    "make_writer",
    "ranked_columns",
    "score_local",
    "score_paths",
]
