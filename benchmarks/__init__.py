"""Side-by-side benchmarks: the data layer against the raw drivers (``python -m benchmarks``)."""
