DROP TABLE enr_api_tokens;
DROP TABLE enr_tenants;
