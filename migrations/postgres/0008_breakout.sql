-- CSPro breakout (seed 000): registered dictionaries, the tables a breakout created, and
-- the chunks of cases written into them (the cursor a killed job resumes from, and what a
-- later run compares with to write only the chunks whose cases changed).

CREATE TABLE breakout_dictionaries (
    tenant_id TEXT NOT NULL,
    project_id TEXT NOT NULL,
    name TEXT NOT NULL,
    label TEXT NOT NULL,
    dictionary TEXT NOT NULL,
    -- 'dat' (fixed-width text) or 'csdb' (CSPro SQLite data file)
    data_kind TEXT NOT NULL,
    -- a file on the server, or '' when the data was uploaded (then in `data`)
    data_path TEXT NOT NULL,
    data BYTEA,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (project_id, name)
);

CREATE TABLE breakout_outputs (
    project_id TEXT NOT NULL,
    dictionary TEXT NOT NULL,
    -- JSON array of the table names, cases table first
    tables TEXT NOT NULL,
    operation_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (project_id, dictionary)
);

CREATE TABLE breakout_chunks (
    project_id TEXT NOT NULL,
    dictionary TEXT NOT NULL,
    chunk BIGINT NOT NULL,
    -- the job that wrote it
    operation_id TEXT NOT NULL,
    -- SHA-256 of the chunk's cases as read
    fingerprint TEXT NOT NULL,
    cases BIGINT NOT NULL,
    -- JSON: issue counts and the first issues of the chunk's cases
    issues TEXT NOT NULL,
    committed_at BIGINT NOT NULL,
    PRIMARY KEY (project_id, dictionary, chunk)
);
