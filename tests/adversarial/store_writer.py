"""A writer for the crash tests: ingests, re-ingests and deletes sources until it is killed.

``python -m tests.adversarial.store_writer SEED`` with the layer configured by the environment
(``DATABASE_URL``, ``VECTOR_DATABASE``, ``CHROMA_PATH`` / ``CHROMA_URL``). Prints one line per
committed step, so the test can kill it mid-way through whatever comes next.
"""

from __future__ import annotations

import asyncio
import sys

import numpy as np

from app.bootstrap import bootstrap
from app.domain import CrawledPage, Source

DIMENSION = 384


async def main(seed: int) -> None:
    layer = bootstrap()
    rng = np.random.default_rng(seed)
    step = 0
    while True:
        step += 1
        source_id = f"w{seed % 7}-{step % 5}"
        count = int(rng.integers(5, 80))
        items = [
            (CrawledPage(url=f"https://{source_id}.test/{i}", chunk_number=0, content=f"c {i}",
                         source_id=source_id), rng.normal(size=DIMENSION).astype("float32"))
            for i in range(count)
        ]  # fmt: skip
        # Same URLs again: the chunks (and their vectors) of an earlier step are replaced.
        await layer.ingest(Source(source_id=source_id, title=source_id), items)
        if step % 3 == 0:
            async with layer.uow() as uow:
                gone = f"w{seed % 7}-{(step + 2) % 5}"
                if await uow.sources.get(gone) is not None:
                    if step % 2:  # the database cascades to the chunks
                        await uow.sources.delete(gone)
                    else:
                        await uow.sources.delete_with_content(gone)
                await uow.commit()
        print("step", step, flush=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
