"""Reporting: the report's tables and their formats, the statistics and comparisons between methods, the
figures, and the export of a store as tables (docs/report.md, docs/export.md)."""
