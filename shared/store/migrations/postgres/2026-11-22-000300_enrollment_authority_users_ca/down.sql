DROP TABLE enr_issued_certificates;
DROP TABLE enr_ca;
DROP TABLE enr_users;
DROP TABLE enr_windows_settings;
DROP TABLE enr_android_bindings;
DROP TABLE enr_apple_push_certificates;
DROP TABLE enr_platform_restrictions;
ALTER TABLE enr_tenants DROP COLUMN device_limit_per_user;
