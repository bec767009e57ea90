-- Poison jobs: whether the current lease was renewed by a report during its attempt, and
-- how many attempts in a row had their lease expire without one. A job that kills the
-- process running it shows as such expiries, and fails for good after a configured count.
ALTER TABLE operations ADD COLUMN lease_renewed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE operations ADD COLUMN silent_expiries BIGINT NOT NULL DEFAULT 0;
