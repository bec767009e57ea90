-- The lease whose holder ended the last attempt with its own report (complete or fail),
-- and where that report left the operation (JSON): the same report repeated with that
-- lease token, by a worker that never saw the answer, gets the same answer again.
ALTER TABLE operations ADD COLUMN ended_lease TEXT;
