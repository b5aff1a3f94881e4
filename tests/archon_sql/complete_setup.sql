-- An Archon database as Archon's own setup script (0.1.0 with upgrades up to 011) leaves it on
-- Supabase, for the adopt tests. Supabase's `auth` schema and roles are stubbed so the RLS
-- policies can be created on a plain PostgreSQL; pgcrypto is left out (gen_random_uuid() is
-- built into PostgreSQL 13+). Seed rows are trimmed to one per table.

CREATE EXTENSION IF NOT EXISTS vector;
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE SCHEMA IF NOT EXISTS auth;
CREATE OR REPLACE FUNCTION auth.role() RETURNS text
    LANGUAGE sql STABLE AS $$ SELECT coalesce(current_setting('request.jwt.claim.role', true), 'service_role') $$;
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN CREATE ROLE anon NOLOGIN; END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN CREATE ROLE authenticated NOLOGIN; END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN CREATE ROLE service_role NOLOGIN BYPASSRLS; END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;
-- Marked as the migrations mark the stand-ins they create (the roles are the whole server's).
COMMENT ON ROLE anon IS 'archon-db: Supabase stand-in';
COMMENT ON ROLE authenticated IS 'archon-db: Supabase stand-in';
COMMENT ON ROLE service_role IS 'archon-db: Supabase stand-in';

-- Settings and the shared updated_at trigger ------------------------------------------------

CREATE TABLE archon_settings (
    id UUID DEFAULT gen_random_uuid() PRIMARY KEY,
    key VARCHAR(255) UNIQUE NOT NULL,
    value TEXT,
    encrypted_value TEXT,
    is_encrypted BOOLEAN DEFAULT FALSE,
    category VARCHAR(100),
    description TEXT,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT NOW()
);
CREATE INDEX idx_archon_settings_key ON archon_settings(key);
CREATE INDEX idx_archon_settings_category ON archon_settings(category);

CREATE OR REPLACE FUNCTION update_updated_at_column() RETURNS TRIGGER AS $$
BEGIN
    NEW.updated_at = NOW();
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER update_archon_settings_updated_at BEFORE UPDATE ON archon_settings
    FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();

ALTER TABLE archon_settings ENABLE ROW LEVEL SECURITY;
CREATE POLICY "service role" ON archon_settings FOR ALL USING (auth.role() = 'service_role');
CREATE POLICY "authenticated" ON archon_settings FOR ALL TO authenticated USING (true);

INSERT INTO archon_settings (key, value, is_encrypted, category, description)
VALUES ('MODEL_CHOICE', 'gpt-4.1-nano', false, 'rag_strategy', 'summaries model');

-- Knowledge base ----------------------------------------------------------------------------

CREATE TABLE archon_sources (
    source_id TEXT PRIMARY KEY,
    source_url TEXT,
    source_display_name TEXT,
    summary TEXT,
    total_word_count INTEGER DEFAULT 0,
    title TEXT,
    metadata JSONB DEFAULT '{}',
    created_at TIMESTAMP WITH TIME ZONE DEFAULT timezone('utc'::text, now()) NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT timezone('utc'::text, now()) NOT NULL
);
CREATE INDEX idx_archon_sources_title ON archon_sources(title);
CREATE INDEX idx_archon_sources_url ON archon_sources(source_url);
CREATE INDEX idx_archon_sources_display_name ON archon_sources(source_display_name);
CREATE INDEX idx_archon_sources_metadata ON archon_sources USING GIN(metadata);
CREATE INDEX idx_archon_sources_knowledge_type ON archon_sources((metadata->>'knowledge_type'));

CREATE TABLE archon_crawled_pages (
    id BIGSERIAL PRIMARY KEY,
    url VARCHAR NOT NULL,
    chunk_number INTEGER NOT NULL,
    content TEXT NOT NULL,
    metadata JSONB NOT NULL DEFAULT '{}'::jsonb,
    source_id TEXT NOT NULL,
    embedding_384 VECTOR(384),
    embedding_768 VECTOR(768),
    embedding_1024 VECTOR(1024),
    embedding_1536 VECTOR(1536),
    embedding_3072 VECTOR(3072),
    llm_chat_model TEXT,
    embedding_model TEXT,
    embedding_dimension INTEGER,
    content_search_vector tsvector GENERATED ALWAYS AS (to_tsvector('english', content)) STORED,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT timezone('utc'::text, now()) NOT NULL,
    UNIQUE (url, chunk_number),
    FOREIGN KEY (source_id) REFERENCES archon_sources(source_id) ON DELETE CASCADE
);
CREATE INDEX idx_archon_crawled_pages_embedding_384 ON archon_crawled_pages
    USING ivfflat (embedding_384 vector_cosine_ops) WITH (lists = 100);
CREATE INDEX idx_archon_crawled_pages_embedding_1536 ON archon_crawled_pages
    USING ivfflat (embedding_1536 vector_cosine_ops) WITH (lists = 100);
CREATE INDEX idx_archon_crawled_pages_metadata ON archon_crawled_pages USING GIN (metadata);
CREATE INDEX idx_archon_crawled_pages_source_id ON archon_crawled_pages (source_id);
CREATE INDEX idx_archon_crawled_pages_content_search ON archon_crawled_pages USING GIN (content_search_vector);
CREATE INDEX idx_archon_crawled_pages_content_trgm ON archon_crawled_pages USING GIN (content gin_trgm_ops);
CREATE INDEX idx_archon_crawled_pages_embedding_model ON archon_crawled_pages (embedding_model);
CREATE INDEX idx_archon_crawled_pages_embedding_dimension ON archon_crawled_pages (embedding_dimension);
CREATE INDEX idx_archon_crawled_pages_llm_chat_model ON archon_crawled_pages (llm_chat_model);

CREATE TABLE archon_code_examples (
    id BIGSERIAL PRIMARY KEY,
    url VARCHAR NOT NULL,
    chunk_number INTEGER NOT NULL,
    content TEXT NOT NULL,
    summary TEXT NOT NULL,
    metadata JSONB NOT NULL DEFAULT '{}'::jsonb,
    source_id TEXT NOT NULL,
    embedding_384 VECTOR(384),
    embedding_768 VECTOR(768),
    embedding_1024 VECTOR(1024),
    embedding_1536 VECTOR(1536),
    embedding_3072 VECTOR(3072),
    llm_chat_model TEXT,
    embedding_model TEXT,
    embedding_dimension INTEGER,
    content_search_vector tsvector
        GENERATED ALWAYS AS (to_tsvector('english', content || ' ' || COALESCE(summary, ''))) STORED,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT timezone('utc'::text, now()) NOT NULL,
    UNIQUE (url, chunk_number),
    FOREIGN KEY (source_id) REFERENCES archon_sources(source_id) ON DELETE CASCADE
);
CREATE INDEX idx_archon_code_examples_metadata ON archon_code_examples USING GIN (metadata);
CREATE INDEX idx_archon_code_examples_source_id ON archon_code_examples (source_id);
CREATE INDEX idx_archon_code_examples_content_search ON archon_code_examples USING GIN (content_search_vector);
CREATE INDEX idx_archon_code_examples_content_trgm ON archon_code_examples USING GIN (content gin_trgm_ops);
CREATE INDEX idx_archon_code_examples_summary_trgm ON archon_code_examples USING GIN (summary gin_trgm_ops);
CREATE INDEX idx_archon_code_examples_embedding_model ON archon_code_examples (embedding_model);
CREATE INDEX idx_archon_code_examples_embedding_dimension ON archon_code_examples (embedding_dimension);
CREATE INDEX idx_archon_code_examples_llm_chat_model ON archon_code_examples (llm_chat_model);

-- Upgrade 011: whole pages, with Archon's own constraint names
CREATE TABLE archon_page_metadata (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    source_id TEXT NOT NULL,
    url TEXT NOT NULL,
    full_content TEXT NOT NULL,
    section_title TEXT,
    section_order INT DEFAULT 0,
    word_count INT NOT NULL,
    char_count INT NOT NULL,
    chunk_count INT NOT NULL DEFAULT 0,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW(),
    metadata JSONB DEFAULT '{}'::jsonb,
    CONSTRAINT archon_page_metadata_url_unique UNIQUE (url),
    CONSTRAINT archon_page_metadata_source_fk FOREIGN KEY (source_id)
        REFERENCES archon_sources(source_id) ON DELETE CASCADE
);
ALTER TABLE archon_crawled_pages
    ADD COLUMN page_id UUID REFERENCES archon_page_metadata(id) ON DELETE SET NULL;
CREATE INDEX idx_archon_page_metadata_source_id ON archon_page_metadata(source_id);
CREATE INDEX idx_archon_page_metadata_url ON archon_page_metadata(url);
CREATE INDEX idx_archon_page_metadata_section ON archon_page_metadata(source_id, section_title, section_order);
CREATE INDEX idx_archon_page_metadata_created_at ON archon_page_metadata(created_at);
CREATE INDEX idx_archon_page_metadata_metadata ON archon_page_metadata USING GIN(metadata);
CREATE INDEX idx_archon_crawled_pages_page_id ON archon_crawled_pages(page_id);

ALTER TABLE archon_crawled_pages ENABLE ROW LEVEL SECURITY;
ALTER TABLE archon_sources ENABLE ROW LEVEL SECURITY;
ALTER TABLE archon_code_examples ENABLE ROW LEVEL SECURITY;
ALTER TABLE archon_page_metadata ENABLE ROW LEVEL SECURITY;
CREATE POLICY "public read" ON archon_crawled_pages FOR SELECT TO public USING (true);
CREATE POLICY "public read" ON archon_sources FOR SELECT TO public USING (true);
CREATE POLICY "public read" ON archon_code_examples FOR SELECT TO public USING (true);
CREATE POLICY "public read" ON archon_page_metadata FOR SELECT TO public USING (true);

INSERT INTO archon_sources (source_id, source_url, title, metadata)
VALUES ('a1b2c3d4e5f60718', 'https://docs.example.com', 'Example docs', '{"knowledge_type": "technical"}');

-- Search functions (two of Archon's eight; the others are optional for the layer as well)

CREATE OR REPLACE FUNCTION match_archon_crawled_pages_multi(
    query_embedding VECTOR,
    embedding_dimension INTEGER,
    match_count INT DEFAULT 10,
    filter JSONB DEFAULT '{}'::jsonb,
    source_filter TEXT DEFAULT NULL
) RETURNS TABLE (id BIGINT, url VARCHAR, chunk_number INTEGER, content TEXT, metadata JSONB,
                 source_id TEXT, similarity FLOAT)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    embedding_column TEXT := 'embedding_' || embedding_dimension;
BEGIN
    IF embedding_dimension NOT IN (384, 768, 1024, 1536, 3072) THEN
        RAISE EXCEPTION 'Unsupported embedding dimension: %', embedding_dimension;
    END IF;
    RETURN QUERY EXECUTE format(
        'SELECT id, url, chunk_number, content, metadata, source_id, 1 - (%I <=> $1) AS similarity
         FROM archon_crawled_pages
         WHERE %I IS NOT NULL AND metadata @> $3 AND ($4 IS NULL OR source_id = $4)
         ORDER BY %I <=> $1 LIMIT $2',
        embedding_column, embedding_column, embedding_column)
    USING query_embedding, match_count, filter, source_filter;
END;
$$;

CREATE OR REPLACE FUNCTION match_archon_crawled_pages(
    query_embedding VECTOR(1536),
    match_count INT DEFAULT 10,
    filter JSONB DEFAULT '{}'::jsonb,
    source_filter TEXT DEFAULT NULL
) RETURNS TABLE (id BIGINT, url VARCHAR, chunk_number INTEGER, content TEXT, metadata JSONB,
                 source_id TEXT, similarity FLOAT)
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY SELECT * FROM match_archon_crawled_pages_multi(query_embedding, 1536, match_count, filter, source_filter);
END;
$$;

-- Projects and tasks ------------------------------------------------------------------------

DO $$ BEGIN
    CREATE TYPE task_status AS ENUM ('todo', 'doing', 'review', 'done');
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
DO $$ BEGIN
    CREATE TYPE task_priority AS ENUM ('low', 'medium', 'high', 'critical');
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;

CREATE TABLE archon_projects (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    title TEXT NOT NULL,
    description TEXT DEFAULT '',
    docs JSONB DEFAULT '[]'::jsonb,
    features JSONB DEFAULT '[]'::jsonb,
    data JSONB DEFAULT '[]'::jsonb,
    github_repo TEXT,
    pinned BOOLEAN DEFAULT false,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);

CREATE TABLE archon_tasks (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id UUID REFERENCES archon_projects(id) ON DELETE CASCADE,
    parent_task_id UUID REFERENCES archon_tasks(id) ON DELETE CASCADE,
    title TEXT NOT NULL,
    description TEXT DEFAULT '',
    status task_status DEFAULT 'todo',
    assignee TEXT DEFAULT 'User' CHECK (assignee IS NOT NULL AND assignee != ''),
    task_order INTEGER DEFAULT 0,
    priority task_priority DEFAULT 'medium' NOT NULL,
    feature TEXT,
    sources JSONB DEFAULT '[]'::jsonb,
    code_examples JSONB DEFAULT '[]'::jsonb,
    archived BOOLEAN DEFAULT false,
    archived_at TIMESTAMPTZ NULL,
    archived_by TEXT NULL,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);

CREATE TABLE archon_project_sources (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id UUID REFERENCES archon_projects(id) ON DELETE CASCADE,
    source_id TEXT NOT NULL,
    linked_at TIMESTAMPTZ DEFAULT NOW(),
    created_by TEXT DEFAULT 'system',
    notes TEXT,
    UNIQUE (project_id, source_id)
);

CREATE TABLE archon_document_versions (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id UUID REFERENCES archon_projects(id) ON DELETE CASCADE,
    task_id UUID REFERENCES archon_tasks(id) ON DELETE CASCADE,
    field_name TEXT NOT NULL,
    version_number INTEGER NOT NULL,
    content JSONB NOT NULL,
    change_summary TEXT,
    change_type TEXT DEFAULT 'update',
    document_id TEXT,
    created_by TEXT DEFAULT 'system',
    created_at TIMESTAMPTZ DEFAULT NOW(),
    CONSTRAINT chk_project_or_task CHECK (
        (project_id IS NOT NULL AND task_id IS NULL) OR (project_id IS NULL AND task_id IS NOT NULL)
    ),
    UNIQUE (project_id, task_id, field_name, version_number)
);

CREATE INDEX idx_archon_tasks_project_id ON archon_tasks(project_id);
CREATE INDEX idx_archon_tasks_status ON archon_tasks(status);
CREATE INDEX idx_archon_tasks_assignee ON archon_tasks(assignee);
CREATE INDEX idx_archon_tasks_order ON archon_tasks(task_order);
CREATE INDEX idx_archon_tasks_priority ON archon_tasks(priority);
CREATE INDEX idx_archon_tasks_archived ON archon_tasks(archived);
CREATE INDEX idx_archon_tasks_archived_at ON archon_tasks(archived_at);
CREATE INDEX idx_archon_project_sources_project_id ON archon_project_sources(project_id);
CREATE INDEX idx_archon_project_sources_source_id ON archon_project_sources(source_id);
CREATE INDEX idx_archon_document_versions_project_id ON archon_document_versions(project_id);
CREATE INDEX idx_archon_document_versions_task_id ON archon_document_versions(task_id);
CREATE INDEX idx_archon_document_versions_field_name ON archon_document_versions(field_name);
CREATE INDEX idx_archon_document_versions_version_number ON archon_document_versions(version_number);
CREATE INDEX idx_archon_document_versions_created_at ON archon_document_versions(created_at);

CREATE TRIGGER update_archon_projects_updated_at BEFORE UPDATE ON archon_projects
    FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();
CREATE TRIGGER update_archon_tasks_updated_at BEFORE UPDATE ON archon_tasks
    FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();

INSERT INTO archon_projects (title) VALUES ('Adopted project');

-- Migration tracking and prompts ------------------------------------------------------------

CREATE TABLE archon_migrations (
    id UUID DEFAULT gen_random_uuid() PRIMARY KEY,
    version VARCHAR(20) NOT NULL,
    migration_name VARCHAR(255) NOT NULL,
    applied_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    checksum VARCHAR(32),
    UNIQUE (version, migration_name)
);
CREATE INDEX idx_archon_migrations_version ON archon_migrations(version);
CREATE INDEX idx_archon_migrations_applied_at ON archon_migrations(applied_at DESC);
INSERT INTO archon_migrations (version, migration_name) VALUES
    ('0.1.0', '001_add_source_url_display_name'),
    ('0.1.0', '011_add_page_metadata_table');

CREATE TABLE archon_prompts (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    prompt_name TEXT UNIQUE NOT NULL,
    prompt TEXT NOT NULL,
    description TEXT,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);
CREATE INDEX idx_archon_prompts_name ON archon_prompts(prompt_name);
CREATE TRIGGER update_archon_prompts_updated_at BEFORE UPDATE ON archon_prompts
    FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();

ALTER TABLE archon_projects ENABLE ROW LEVEL SECURITY;
ALTER TABLE archon_tasks ENABLE ROW LEVEL SECURITY;
ALTER TABLE archon_project_sources ENABLE ROW LEVEL SECURITY;
ALTER TABLE archon_document_versions ENABLE ROW LEVEL SECURITY;
ALTER TABLE archon_prompts ENABLE ROW LEVEL SECURITY;
ALTER TABLE archon_migrations ENABLE ROW LEVEL SECURITY;
CREATE POLICY "service role" ON archon_projects FOR ALL USING (auth.role() = 'service_role');
CREATE POLICY "service role" ON archon_tasks FOR ALL USING (auth.role() = 'service_role');
CREATE POLICY "authenticated read" ON archon_prompts FOR SELECT TO authenticated USING (true);

INSERT INTO archon_prompts (prompt_name, prompt, description)
VALUES ('document_builder', 'You are the Document-Builder agent.', 'docs agent');
