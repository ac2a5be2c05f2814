DROP TABLE apl_scep_ra;
DROP TABLE apl_actions;
DROP TABLE apl_command_results;
DROP TABLE apl_commands;
DROP TABLE apl_device_info;
DROP TABLE apl_enrollments;
DROP TABLE apl_identities;
DROP TABLE apl_enrollment_profiles;
