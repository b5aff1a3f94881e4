"""Keeping the external stores (Chroma, Weaviate) derived from the rows.

``table`` (the outbox table and draining it), ``view`` (``uow.vectors`` on an external store:
vectors into the rows, operations into the outbox), ``apply`` (a committed Unit of Work's
operations applied from memory), ``identity`` (the database's identity that names its store's
collections) and ``reconcile`` (checking a store against the rows, and rebuilding it).
"""
