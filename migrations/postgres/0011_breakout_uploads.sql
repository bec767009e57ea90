-- Uploaded breakout data in chunks of 1 MiB instead of one value per file, so that an
-- upload is written and read back a chunk at a time (a 400 MiB value cost several times
-- its size in memory on the way in and out). The chunk that ends an upload is always
-- shorter than 1 MiB (empty when the file fills its chunks exactly). Existing uploads
-- are moved into chunks.

CREATE TABLE breakout_uploads (
    upload_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    project_id TEXT NOT NULL,
    bytes BYTEA NOT NULL,
    -- epoch ms: an upload no dictionary refers to an hour after is deleted
    written_at BIGINT NOT NULL,
    PRIMARY KEY (upload_id, seq)
);

-- the upload holding the dictionary's data, or NULL for a file on the server
ALTER TABLE breakout_dictionaries ADD COLUMN upload_id TEXT;

UPDATE breakout_dictionaries
SET upload_id = CAST(CAST(md5(project_id || '/' || name) AS UUID) AS TEXT)
WHERE data IS NOT NULL;

INSERT INTO breakout_uploads (upload_id, seq, project_id, bytes, written_at)
SELECT d.upload_id, s.seq, d.project_id,
       substr(d.data, CAST(s.seq * 1048576 + 1 AS INTEGER), 1048576), d.created_at
FROM breakout_dictionaries d
CROSS JOIN LATERAL generate_series(0, length(d.data) / 1048576) AS s(seq)
WHERE d.data IS NOT NULL;

ALTER TABLE breakout_dictionaries DROP COLUMN data;
