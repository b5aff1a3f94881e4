"""What Archon's own setup puts in a new database: its default settings and its upgrade records.

Revision ``0006_archon_data`` seeds both on every backend. A setting is inserted only when its key
is absent, so a value a user (or an earlier Archon setup) stored is never overwritten. The
``archon_migrations`` rows name Archon's upgrade scripts as applied: Archon's migration page lists
as pending every ``migration/<version>/<name>.sql`` whose ``(version, name)`` has no row, and a
database built by the layer already has everything those scripts add.

Archon's prompts (``archon_prompts``) are Archon's own writing and are left for Archon to fill.
"""

from __future__ import annotations

from typing import NamedTuple


class DefaultSetting(NamedTuple):
    """One ``archon_settings`` row as Archon's setup creates it."""

    key: str
    value: str | None
    category: str
    description: str
    encrypted: bool = False


def _group(category: str, rows: list[tuple[str, str | None, str]]) -> list[DefaultSetting]:
    return [DefaultSetting(key, value, category, text) for key, value, text in rows]


def _credentials(names: list[tuple[str, str]]) -> list[DefaultSetting]:
    # Placeholders: no value until the user enters one, then stored encrypted.
    return [DefaultSetting(key, None, "api_keys", text, encrypted=True) for key, text in names]


ARCHON_SETTINGS: tuple[DefaultSetting, ...] = tuple(
    _group(
        "server_config",
        [
            ("MCP_TRANSPORT", "dual", "How the MCP server talks to clients"),
            ("HOST", "localhost", "Host name the MCP server listens on"),
            ("PORT", "8051", "Port the MCP server listens on"),
        ],
    )
    + _group(
        "rag_strategy",
        [
            ("MODEL_CHOICE", "gpt-4.1-nano", "Chat model for summaries and contextual text"),
            ("USE_CONTEXTUAL_EMBEDDINGS", "false", "Prefix each chunk with its document's context"),
            ("CONTEXTUAL_EMBEDDINGS_MAX_WORKERS", "3", "Parallel workers for contextual text"),
            ("USE_HYBRID_SEARCH", "true", "Combine vector and keyword search"),
            ("USE_AGENTIC_RAG", "true", "Extract code examples for agents to search"),
            ("USE_RERANKING", "true", "Reorder search results with a cross-encoder"),
            ("LLM_PROVIDER", "openai", "Provider of the chat and embedding models"),
            ("LLM_BASE_URL", None, "Endpoint of a self-hosted or proxied provider, if any"),
            ("EMBEDDING_MODEL", "text-embedding-3-small", "Model that embeds chunks and queries"),
            ("CRAWL_BATCH_SIZE", "50", "Pages fetched per crawl batch"),
            ("CRAWL_MAX_CONCURRENT", "10", "Pages fetched at the same time"),
            ("CRAWL_WAIT_STRATEGY", "domcontentloaded", "Page event the crawler waits for"),
            ("CRAWL_PAGE_TIMEOUT", "30000", "Milliseconds before a page load is abandoned"),
            ("CRAWL_DELAY_BEFORE_HTML", "0.5", "Seconds to wait before reading a page's HTML"),
            ("DOCUMENT_STORAGE_BATCH_SIZE", "100", "Chunks written per storage batch"),
            ("EMBEDDING_BATCH_SIZE", "200", "Texts sent per embedding request"),
            ("DELETE_BATCH_SIZE", "100", "Rows removed per delete batch"),
            ("ENABLE_PARALLEL_BATCHES", "true", "Process storage batches in parallel"),
            ("MEMORY_THRESHOLD_PERCENT", "80", "Memory use at which crawling slows down"),
            ("DISPATCHER_CHECK_INTERVAL", "0.5", "Seconds between crawl dispatcher checks"),
            ("CODE_EXTRACTION_BATCH_SIZE", "40", "Documents scanned per code extraction batch"),
            ("CODE_SUMMARY_MAX_WORKERS", "3", "Parallel workers summarizing code examples"),
            ("CONTEXTUAL_EMBEDDING_BATCH_SIZE", "50", "Chunks per contextual text request"),
        ],
    )
    + _group("monitoring", [("LOGFIRE_ENABLED", "true", "Send traces and logs to Logfire")])
    + _group("features", [("PROJECTS_ENABLED", "true", "Show projects and tasks")])
    + _credentials(
        [
            ("OPENAI_API_KEY", "Key for OpenAI's models"),
            ("GOOGLE_API_KEY", "Key for Google's Gemini models"),
            ("OPENROUTER_API_KEY", "Key for models served through OpenRouter"),
            ("ANTHROPIC_API_KEY", "Key for Anthropic's Claude models"),
            ("GROK_API_KEY", "Key for xAI's Grok models"),
        ]
    )
    + _group(
        "code_extraction",
        [
            ("MIN_CODE_BLOCK_LENGTH", "250", "Shortest code block kept, in characters"),
            ("MAX_CODE_BLOCK_LENGTH", "5000", "Longest code block kept, in characters"),
            ("CONTEXT_WINDOW_SIZE", "1000", "Characters of surrounding text kept with a block"),
            ("ENABLE_COMPLETE_BLOCK_DETECTION", "true", "Extend blocks cut off mid-construct"),
            ("ENABLE_LANGUAGE_SPECIFIC_PATTERNS", "true", "Use per-language block patterns"),
            ("ENABLE_CONTEXTUAL_LENGTH", "true", "Adjust length limits by surrounding text"),
            ("ENABLE_PROSE_FILTERING", "true", "Drop blocks that are mostly prose"),
            ("MAX_PROSE_RATIO", "0.15", "Largest share of prose a code block may hold"),
            ("MIN_CODE_INDICATORS", "3", "Code markers a block needs to count as code"),
            ("ENABLE_DIAGRAM_FILTERING", "true", "Drop diagrams written as code blocks"),
            ("CODE_EXTRACTION_MAX_WORKERS", "3", "Parallel workers extracting code"),
            ("ENABLE_CODE_SUMMARIES", "true", "Summarize each extracted code example"),
        ],
    )
)

ARCHON_MIGRATIONS_VERSION = "0.1.0"
# Archon's upgrade scripts in migration/0.1.0, by file name without ``.sql``.
ARCHON_MIGRATIONS: tuple[str, ...] = (
    "001_add_source_url_display_name",
    "002_add_hybrid_search_tsvector",
    "003_ollama_add_columns",
    "004_ollama_migrate_data",
    "005_ollama_create_functions",
    "006_ollama_create_indexes_optional",
    "007_add_priority_column_to_tasks",
    "008_add_migration_tracking",
    "009_add_cascade_delete_constraints",
    "010_add_provider_placeholders",
    "011_add_page_metadata_table",
)


def archon_migration_keys() -> list[tuple[str, str]]:
    """``(version, migration_name)`` of every Archon upgrade a new database counts as applied."""
    return [(ARCHON_MIGRATIONS_VERSION, name) for name in ARCHON_MIGRATIONS]
