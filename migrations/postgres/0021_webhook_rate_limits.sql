-- A webhook's optional `rateLimit` (deliveries per second), and the schedule every
-- replica's dispatcher shares to keep it: the next free slot, in microseconds since the
-- epoch (0: never sent to under a limit), moved by compare-and-set.
ALTER TABLE webhooks ADD COLUMN rate_limit BIGINT;
ALTER TABLE webhooks ADD COLUMN rate_schedule BIGINT NOT NULL DEFAULT 0;
