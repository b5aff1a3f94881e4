-- Archon's SQL functions as Archon's setup script (0.1.0) defines them, restated in a schema of
-- their own (`archon_ref`) over the same tables, so that tests can compare the layer's versions
-- with them on the same data. Same column choice, filters, limits, joins and ordering as
-- Archon's; Archon's ties are unordered, which the tests allow for.

CREATE SCHEMA archon_ref;

CREATE FUNCTION archon_ref.get_embedding_column_name(dimension INTEGER) RETURNS TEXT
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    CASE dimension
        WHEN 384 THEN RETURN 'embedding_384';
        WHEN 768 THEN RETURN 'embedding_768';
        WHEN 1024 THEN RETURN 'embedding_1024';
        WHEN 1536 THEN RETURN 'embedding_1536';
        WHEN 3072 THEN RETURN 'embedding_3072';
        ELSE RAISE EXCEPTION 'Unsupported embedding dimension: %. Supported dimensions are: 384, 768, 1024, 1536, 3072', dimension;
    END CASE;
END;
$$;

CREATE FUNCTION archon_ref.detect_embedding_dimension(embedding_vector VECTOR) RETURNS INTEGER
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN vector_dims(embedding_vector);
END;
$$;

CREATE FUNCTION archon_ref.archive_task(task_id_param UUID, archived_by_param TEXT DEFAULT 'system')
RETURNS BOOLEAN LANGUAGE plpgsql AS $$
DECLARE
    found_task BOOLEAN;
BEGIN
    SELECT EXISTS (SELECT 1 FROM public.archon_tasks WHERE id = task_id_param AND archived = FALSE)
        INTO found_task;
    IF NOT found_task THEN
        RETURN FALSE;
    END IF;
    UPDATE public.archon_tasks
        SET archived = TRUE, archived_at = NOW(), archived_by = archived_by_param, updated_at = NOW()
        WHERE id = task_id_param;
    UPDATE public.archon_tasks
        SET archived = TRUE, archived_at = NOW(), archived_by = archived_by_param, updated_at = NOW()
        WHERE parent_task_id = task_id_param AND archived = FALSE;
    RETURN TRUE;
END;
$$;

-- Vector search: the nearest match_count rows of the dimension's column, filtered.

CREATE FUNCTION archon_ref.match_archon_crawled_pages_multi(
    query_embedding VECTOR, embedding_dimension INTEGER, match_count INT DEFAULT 10,
    filter JSONB DEFAULT '{}'::jsonb, source_filter TEXT DEFAULT NULL
) RETURNS TABLE (id BIGINT, url VARCHAR, chunk_number INTEGER, content TEXT, metadata JSONB,
                 source_id TEXT, similarity FLOAT)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    col TEXT := archon_ref.get_embedding_column_name(embedding_dimension);
BEGIN
    RETURN QUERY EXECUTE format(
        'SELECT id, url, chunk_number, content, metadata, source_id, 1 - (%1$I <=> $1) AS similarity
         FROM public.archon_crawled_pages
         WHERE %1$I IS NOT NULL AND metadata @> $3 AND ($4 IS NULL OR source_id = $4)
         ORDER BY %1$I <=> $1 LIMIT $2', col)
    USING query_embedding, match_count, filter, source_filter;
END;
$$;

CREATE FUNCTION archon_ref.match_archon_code_examples_multi(
    query_embedding VECTOR, embedding_dimension INTEGER, match_count INT DEFAULT 10,
    filter JSONB DEFAULT '{}'::jsonb, source_filter TEXT DEFAULT NULL
) RETURNS TABLE (id BIGINT, url VARCHAR, chunk_number INTEGER, content TEXT, summary TEXT,
                 metadata JSONB, source_id TEXT, similarity FLOAT)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    col TEXT := archon_ref.get_embedding_column_name(embedding_dimension);
BEGIN
    RETURN QUERY EXECUTE format(
        'SELECT id, url, chunk_number, content, summary, metadata, source_id,
                1 - (%1$I <=> $1) AS similarity
         FROM public.archon_code_examples
         WHERE %1$I IS NOT NULL AND metadata @> $3 AND ($4 IS NULL OR source_id = $4)
         ORDER BY %1$I <=> $1 LIMIT $2', col)
    USING query_embedding, match_count, filter, source_filter;
END;
$$;

-- Hybrid search: the vector top match_count and the full-text top match_count, full outer
-- join, the vector similarity where present (else the text rank), similarity descending.

CREATE FUNCTION archon_ref.hybrid_search_archon_crawled_pages_multi(
    query_embedding VECTOR, embedding_dimension INTEGER, query_text TEXT,
    match_count INT DEFAULT 10, filter JSONB DEFAULT '{}'::jsonb, source_filter TEXT DEFAULT NULL
) RETURNS TABLE (id BIGINT, url VARCHAR, chunk_number INTEGER, content TEXT, metadata JSONB,
                 source_id TEXT, similarity FLOAT, match_type TEXT)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    col TEXT := archon_ref.get_embedding_column_name(embedding_dimension);
BEGIN
    RETURN QUERY EXECUTE format($q$
        WITH vector_results AS (
            SELECT cp.id, cp.url, cp.chunk_number, cp.content, cp.metadata, cp.source_id,
                   1 - (cp.%1$I <=> $1) AS vector_sim
            FROM public.archon_crawled_pages cp
            WHERE cp.metadata @> $4 AND ($5 IS NULL OR cp.source_id = $5) AND cp.%1$I IS NOT NULL
            ORDER BY cp.%1$I <=> $1 LIMIT $2
        ), text_results AS (
            SELECT cp.id, cp.url, cp.chunk_number, cp.content, cp.metadata, cp.source_id,
                   ts_rank_cd(cp.content_search_vector, plainto_tsquery('english', $6)) AS text_sim
            FROM public.archon_crawled_pages cp
            WHERE cp.metadata @> $4 AND ($5 IS NULL OR cp.source_id = $5)
              AND cp.content_search_vector @@ plainto_tsquery('english', $6)
            ORDER BY text_sim DESC LIMIT $3
        ), combined_results AS (
            SELECT COALESCE(v.id, t.id) AS id, COALESCE(v.url, t.url) AS url,
                   COALESCE(v.chunk_number, t.chunk_number) AS chunk_number,
                   COALESCE(v.content, t.content) AS content,
                   COALESCE(v.metadata, t.metadata) AS metadata,
                   COALESCE(v.source_id, t.source_id) AS source_id,
                   COALESCE(v.vector_sim, t.text_sim, 0)::float8 AS similarity,
                   CASE WHEN v.id IS NOT NULL AND t.id IS NOT NULL THEN 'hybrid'
                        WHEN v.id IS NOT NULL THEN 'vector' ELSE 'keyword' END AS match_type
            FROM vector_results v FULL OUTER JOIN text_results t ON v.id = t.id
        )
        SELECT * FROM combined_results ORDER BY similarity DESC LIMIT $2
    $q$, col)
    USING query_embedding, match_count, match_count, filter, source_filter, query_text;
END;
$$;

CREATE FUNCTION archon_ref.hybrid_search_archon_code_examples_multi(
    query_embedding VECTOR, embedding_dimension INTEGER, query_text TEXT,
    match_count INT DEFAULT 10, filter JSONB DEFAULT '{}'::jsonb, source_filter TEXT DEFAULT NULL
) RETURNS TABLE (id BIGINT, url VARCHAR, chunk_number INTEGER, content TEXT, summary TEXT,
                 metadata JSONB, source_id TEXT, similarity FLOAT, match_type TEXT)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    col TEXT := archon_ref.get_embedding_column_name(embedding_dimension);
BEGIN
    RETURN QUERY EXECUTE format($q$
        WITH vector_results AS (
            SELECT ce.id, ce.url, ce.chunk_number, ce.content, ce.summary, ce.metadata,
                   ce.source_id, 1 - (ce.%1$I <=> $1) AS vector_sim
            FROM public.archon_code_examples ce
            WHERE ce.metadata @> $4 AND ($5 IS NULL OR ce.source_id = $5) AND ce.%1$I IS NOT NULL
            ORDER BY ce.%1$I <=> $1 LIMIT $2
        ), text_results AS (
            SELECT ce.id, ce.url, ce.chunk_number, ce.content, ce.summary, ce.metadata,
                   ce.source_id,
                   ts_rank_cd(ce.content_search_vector, plainto_tsquery('english', $6)) AS text_sim
            FROM public.archon_code_examples ce
            WHERE ce.metadata @> $4 AND ($5 IS NULL OR ce.source_id = $5)
              AND ce.content_search_vector @@ plainto_tsquery('english', $6)
            ORDER BY text_sim DESC LIMIT $3
        ), combined_results AS (
            SELECT COALESCE(v.id, t.id) AS id, COALESCE(v.url, t.url) AS url,
                   COALESCE(v.chunk_number, t.chunk_number) AS chunk_number,
                   COALESCE(v.content, t.content) AS content,
                   COALESCE(v.summary, t.summary) AS summary,
                   COALESCE(v.metadata, t.metadata) AS metadata,
                   COALESCE(v.source_id, t.source_id) AS source_id,
                   COALESCE(v.vector_sim, t.text_sim, 0)::float8 AS similarity,
                   CASE WHEN v.id IS NOT NULL AND t.id IS NOT NULL THEN 'hybrid'
                        WHEN v.id IS NOT NULL THEN 'vector' ELSE 'keyword' END AS match_type
            FROM vector_results v FULL OUTER JOIN text_results t ON v.id = t.id
        )
        SELECT * FROM combined_results ORDER BY similarity DESC LIMIT $2
    $q$, col)
    USING query_embedding, match_count, match_count, filter, source_filter, query_text;
END;
$$;

-- The legacy signatures: the 1536 column.

CREATE FUNCTION archon_ref.match_archon_crawled_pages(
    query_embedding VECTOR(1536), match_count INT DEFAULT 10,
    filter JSONB DEFAULT '{}'::jsonb, source_filter TEXT DEFAULT NULL
) RETURNS TABLE (id BIGINT, url VARCHAR, chunk_number INTEGER, content TEXT, metadata JSONB,
                 source_id TEXT, similarity FLOAT)
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY SELECT * FROM archon_ref.match_archon_crawled_pages_multi(
        query_embedding, 1536, match_count, filter, source_filter);
END;
$$;

CREATE FUNCTION archon_ref.match_archon_code_examples(
    query_embedding VECTOR(1536), match_count INT DEFAULT 10,
    filter JSONB DEFAULT '{}'::jsonb, source_filter TEXT DEFAULT NULL
) RETURNS TABLE (id BIGINT, url VARCHAR, chunk_number INTEGER, content TEXT, summary TEXT,
                 metadata JSONB, source_id TEXT, similarity FLOAT)
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY SELECT * FROM archon_ref.match_archon_code_examples_multi(
        query_embedding, 1536, match_count, filter, source_filter);
END;
$$;

CREATE FUNCTION archon_ref.hybrid_search_archon_crawled_pages(
    query_embedding VECTOR(1536), query_text TEXT, match_count INT DEFAULT 10,
    filter JSONB DEFAULT '{}'::jsonb, source_filter TEXT DEFAULT NULL
) RETURNS TABLE (id BIGINT, url VARCHAR, chunk_number INTEGER, content TEXT, metadata JSONB,
                 source_id TEXT, similarity FLOAT, match_type TEXT)
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY SELECT * FROM archon_ref.hybrid_search_archon_crawled_pages_multi(
        query_embedding, 1536, query_text, match_count, filter, source_filter);
END;
$$;

CREATE FUNCTION archon_ref.hybrid_search_archon_code_examples(
    query_embedding VECTOR(1536), query_text TEXT, match_count INT DEFAULT 10,
    filter JSONB DEFAULT '{}'::jsonb, source_filter TEXT DEFAULT NULL
) RETURNS TABLE (id BIGINT, url VARCHAR, chunk_number INTEGER, content TEXT, summary TEXT,
                 metadata JSONB, source_id TEXT, similarity FLOAT, match_type TEXT)
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY SELECT * FROM archon_ref.hybrid_search_archon_code_examples_multi(
        query_embedding, 1536, query_text, match_count, filter, source_filter);
END;
$$;
