"""Serving: inverted-index engines behind one interface, OpenSearch and sentence-transformers export, query-side encoders."""
