"""Values larger than a MySQL TEXT (64 KB) round-trip on every backend."""

from __future__ import annotations

from app.domain import PageMetadata, Source


async def test_a_whole_page_larger_than_64_kb(layer, sql) -> None:
    body = "Rate limiting with token buckets. " * 8000  # ~270 KB
    async with layer.uow() as uow:
        await uow.sources.add(Source(source_id="big"))
        page = await uow.page_metadata.add(
            PageMetadata(
                source_id="big",
                url="https://docs.example/big",
                full_content=body,
                word_count=len(body.split()),
                char_count=len(body),
            )
        )
        await uow.commit()
    async with layer.uow(read_only=True) as uow:
        read = await uow.page_metadata.get_or_raise(page.id)
    assert read.full_content == body
    assert await sql.scalar("SELECT length(full_content) FROM archon_page_metadata") == len(body)
