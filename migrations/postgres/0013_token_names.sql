-- Tokens get a name, so that what a token did (a cancellation's `cancelledBy`) says who.
ALTER TABLE api_tokens ADD COLUMN name TEXT;
