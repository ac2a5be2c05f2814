DROP TABLE and_early_operations;
DROP TABLE and_pubsub_receipts;
DROP TABLE and_actions;
DROP TABLE and_devices;
DROP TABLE and_enrollment_tokens;
DROP TABLE and_enterprises;
