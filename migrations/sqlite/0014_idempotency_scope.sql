-- Sealing stored secrets again at start reads only the answers of webhook registrations
-- (the one scope whose answers hold a secret): found through this index, not by a scan
-- of every idempotency key kept, and no cost to the writes of any other scope.
CREATE INDEX idempotency_webhook_answers ON idempotency_keys (project_id, scope, idem_key)
    WHERE scope = 'webhook.create';
