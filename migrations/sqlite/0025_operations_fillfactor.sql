-- PostgreSQL's migration 0025 leaves room in the operations table's pages; SQLite has no
-- such setting. This keeps both backends' migration versions in step.
SELECT 1;
