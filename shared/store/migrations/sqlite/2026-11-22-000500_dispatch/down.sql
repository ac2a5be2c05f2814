DROP TABLE dsp_audit_events;
DROP TABLE dsp_bulk_targets;
DROP TABLE dsp_bulk_jobs;
DROP TABLE dsp_actions;
