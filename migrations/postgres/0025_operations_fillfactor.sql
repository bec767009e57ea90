-- Operations are rewritten many times (each state change, each progress report). Room
-- left in each page lets PostgreSQL put the new version of a row beside the old one
-- when no indexed column changed (a HOT update), adding no entry to any index.
ALTER TABLE operations SET (fillfactor = 85);
