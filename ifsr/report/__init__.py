"""Reporting: the table writer, comparisons between results, figures, the replication report."""
