"""Reporting: each claim's verdict, figures, the replication report."""
