DROP TABLE rt_idempotency;
DROP TABLE rt_leases;
DROP TABLE rt_inbox;
DROP TABLE rt_outbox;
