"""What the external stores (Chroma, Weaviate) share: records as flat metadata, and filters."""
