-- Notebooks (seed 003): saved pipelines of blocks, run on demand or on a cron schedule.
-- A run is a batch; `notebook_runs` says which batch ran for which tick.
CREATE TABLE notebooks (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    description TEXT,
    schedule TEXT,
    timezone TEXT NOT NULL,
    schedule_paused INTEGER NOT NULL DEFAULT 0,
    notifications TEXT NOT NULL,
    callbacks TEXT NOT NULL,
    failure_policy TEXT NOT NULL,
    -- The next tick not yet claimed; NULL without a schedule. Advanced in the transaction
    -- that creates the tick's run, under the row's lock.
    next_run_at BIGINT,
    last_run_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    modified_by TEXT NOT NULL
);
CREATE INDEX notebooks_listing ON notebooks (project_id, created_at DESC);
CREATE INDEX notebooks_due ON notebooks (next_run_at)
    WHERE next_run_at IS NOT NULL AND schedule_paused = 0;

CREATE TABLE notebook_blocks (
    id TEXT PRIMARY KEY,
    notebook_id TEXT NOT NULL REFERENCES notebooks (id) ON DELETE CASCADE,
    block_type TEXT NOT NULL,
    title TEXT NOT NULL,
    description TEXT,
    block_order INTEGER NOT NULL,
    configuration TEXT NOT NULL,
    dependencies TEXT NOT NULL,
    disabled INTEGER NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    modified_by TEXT NOT NULL
);
CREATE INDEX notebook_blocks_notebook ON notebook_blocks (notebook_id, block_order);

CREATE TABLE notebook_runs (
    id TEXT PRIMARY KEY,
    notebook_id TEXT NOT NULL REFERENCES notebooks (id) ON DELETE CASCADE,
    batch_id TEXT NOT NULL,
    run_trigger TEXT NOT NULL,
    -- The tick a scheduled run ran for: one run per tick, whichever replica claims it.
    scheduled_for BIGINT,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX notebook_runs_tick ON notebook_runs (notebook_id, scheduled_for)
    WHERE scheduled_for IS NOT NULL;
CREATE INDEX notebook_runs_listing ON notebook_runs (notebook_id, created_at DESC);
CREATE INDEX notebook_runs_batch ON notebook_runs (batch_id);

-- When any replica's scheduler last looked at the clock, and since when one has without
-- a gap: ticks that came due since `up_since` are all run; earlier ones, which came due
-- while no replica was running, are missed ticks.
CREATE TABLE scheduler_clock (
    id INTEGER PRIMARY KEY,
    seen_at BIGINT NOT NULL,
    up_since BIGINT NOT NULL
);
