"""What ``layer.stats()`` reports: pools, statements, errors, replicas, the vector outbox.

``counters`` counts as statements run (cheaply: see there); ``report`` takes a snapshot of every
engine's pool and counters with the replicas' lag and the outbox backlog; ``prometheus`` writes it
in Prometheus' text exposition format.
"""
