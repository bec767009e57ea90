-- Seed 004's cursor syncs: credentials for their sources, and each sync's cursor.

-- A project's credential for a source: a bearer token or a header and its value, sealed
-- (JSON) in `secret`. The header name is not secret, so lists can show it. `origins`
-- (a JSON array; empty: any) are the only origins a sync may send it to.
CREATE TABLE credentials (
    project_id  TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    tenant_id   TEXT NOT NULL,
    kind        TEXT NOT NULL,
    header      TEXT,
    origins     TEXT NOT NULL,
    secret      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (project_id, name)
);

-- One row per sync name of a project. `version` grows with every write of the cursor: a
-- page is written only over the version it was asked from, so a page is never written
-- twice. `holder` is the operation running the sync (while it is Running, no other run
-- of the sync pages). `event_sequence` numbers the sync's events.
CREATE TABLE syncs (
    project_id         TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name               TEXT NOT NULL,
    tenant_id          TEXT NOT NULL,
    cursor             TEXT,
    version            BIGINT NOT NULL DEFAULT 0,
    event_sequence     BIGINT NOT NULL DEFAULT 0,
    records_total      BIGINT NOT NULL DEFAULT 0,
    pages_total        BIGINT NOT NULL DEFAULT 0,
    holder             TEXT,
    last_operation_id  TEXT,
    run_started_at     BIGINT,
    run_ended_at       BIGINT,
    run_records        BIGINT NOT NULL DEFAULT 0,
    run_pages          BIGINT NOT NULL DEFAULT 0,
    last_error         TEXT,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    PRIMARY KEY (project_id, name)
);
