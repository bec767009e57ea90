-- A webhook's labels, `{"name": "value"}` as JSON: tags of its owner's, one of which,
-- `owner`, a portal link may be limited to.
ALTER TABLE webhooks ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';
