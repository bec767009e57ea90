-- The W3C traceparent of the API request's span that caused an event, so that the
-- dispatcher's spans for its deliveries join that request's trace. NULL when traces are
-- not exported, and for events of background work.
ALTER TABLE events ADD COLUMN traceparent TEXT;
