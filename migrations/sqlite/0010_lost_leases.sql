-- Poison jobs: how many attempts in a row lost their lease (their holder died or hung
-- without reporting how the attempt ended). A job that kills the process running it
-- shows as such attempts, and fails for good after a configured count.
ALTER TABLE operations ADD COLUMN lost_leases BIGINT NOT NULL DEFAULT 0;
