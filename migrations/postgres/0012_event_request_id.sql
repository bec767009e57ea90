-- The API request that caused an event (its X-Request-Id), so that the dispatcher's log
-- lines for the event's deliveries name it too. NULL for events of background work
-- (timeouts, lease expiry, the batch scheduler).
ALTER TABLE events ADD COLUMN request_id TEXT;
