"""``archon-db copy`` at scale: ``TEST_COPY_CHUNKS`` 1536-d chunks (``make test-adversarial``:
50,000) plus every other table, killed with SIGKILL at a random row, resumed with ``--resume``;
identical checksums, the same nearest rows, and the copy's peak memory under 500 MiB (the
child's own ``VmHWM``, killed run and resumed run alike).

With the small CI default (500 chunks) one path runs (PostgreSQL + pgvector -> SQLite); with
``TEST_COPY_CHUNKS`` of 10,000 or more, or ``TEST_COPY_ALL_PATHS=1``, the four paths of
Archon's appendix B both ways (six directions: two of the four are each other's reverse).
``TEST_COPY_NN_SAMPLE`` vectors per collection (default 200) are compared bit for bit and asked
of both indexes; the checksums compare every vector's bytes.
"""

from __future__ import annotations

import os

import pytest

from tests.transfer_checks import killed_and_resumed, pgvector_admin

CHUNKS = int(os.environ.get("TEST_COPY_CHUNKS", "500"))
NN_SAMPLE = int(os.environ.get("TEST_COPY_NN_SAMPLE", "200"))
MEMORY_LIMIT_MIB = 500
APPENDIX_B = [
    ("pgvector", "sqlite"),
    ("postgres", "mariadb"),
    ("mariadb", "sqlite"),
    ("sqlite", "pgvector"),
]
# Both ways: appendix B holds pgvector -> SQLite and its reverse already, so six directions.
BOTH_WAYS = list(dict.fromkeys(APPENDIX_B + [(t, s) for s, t in APPENDIX_B]))
ALL_PATHS = CHUNKS >= 10_000 or os.environ.get("TEST_COPY_ALL_PATHS") == "1"
PATHS = BOTH_WAYS if ALL_PATHS else APPENDIX_B[:1]


@pytest.fixture
def admin(request: pytest.FixtureRequest) -> str | None:
    return pgvector_admin(request)


@pytest.mark.parametrize(("source_kind", "target_kind"), PATHS, ids=lambda k: k)
async def test_large_copy_killed_and_resumed(
    source_kind: str, target_kind: str, admin: str | None
) -> None:
    resumed = await killed_and_resumed(source_kind, target_kind, admin, CHUNKS, NN_SAMPLE)
    print(
        f"\n{source_kind} -> {target_kind}: {CHUNKS} chunks, killed at {resumed.held} chunk rows "
        f"(peak RSS {resumed.killed_peak:.0f} MiB), resumed: peak RSS "
        f"{resumed.resumed_peak:.0f} MiB\n{resumed.output[-2000:]}"
    )
    assert max(resumed.killed_peak, resumed.resumed_peak) < MEMORY_LIMIT_MIB
