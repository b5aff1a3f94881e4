"""The raw drivers doing the same work as the layer: asyncpg, aiomysql, aiosqlite, chromadb."""
