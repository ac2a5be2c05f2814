DROP TABLE inv_group_members;
DROP TABLE inv_groups;
DROP TABLE inv_autopilot_registrations;
DROP TABLE inv_cleanup_settings;
DROP TABLE inv_directory_records;
DROP TABLE inv_devices;
