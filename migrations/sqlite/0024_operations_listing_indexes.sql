-- The operations list of a project with many operations: each index serves one kind of
-- page in its order (created_at DESC, id DESC), and holds what the counts per status and
-- the usual filters read, so neither a page deep in the list nor the summary reads the
-- table row by row. The status index is the one SQLite picks for any count grouped by
-- status, so it carries the other filters' columns too.
DROP INDEX operations_listing;
CREATE INDEX operations_listing ON operations (project_id, created_at DESC, id DESC, priority);
CREATE INDEX operations_listing_status ON operations (project_id, status, created_at DESC, id DESC, operation_type, priority);
CREATE INDEX operations_listing_type ON operations (project_id, operation_type, created_at DESC, id DESC, status);
