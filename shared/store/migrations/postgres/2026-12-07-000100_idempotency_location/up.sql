-- The first answer's Location header, sent again on a replay.
ALTER TABLE rt_idempotency ADD COLUMN location TEXT;
