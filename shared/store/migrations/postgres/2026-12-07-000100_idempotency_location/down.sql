ALTER TABLE rt_idempotency DROP COLUMN location;
