"""The SQL-backed indexes: vectors in their rows' ``embedding_<dim>`` columns, searched in SQL.

``base`` (what both share), ``exact`` (float32 blobs, numpy search), ``pgvector`` (HNSW),
``writes`` (set-based vector writes) and ``common`` (columns, filters, pgvector detection).
"""
