"""Archon data layer: typed entities, repositories, a Unit of Work and a vector index."""

__version__ = "0.1.0"
