//! Rows of the enrollment service's tables.

use diesel::prelude::*;
use mdm_domain::{DeviceId, EnrollmentId, MdmAuthority, Platform, Role, TenantId, TokenId, UserId};

use crate::schema::{
    enr_android_bindings, enr_api_tokens, enr_apple_push_certificates, enr_ca,
    enr_issued_certificates, enr_platform_restrictions, enr_tenants, enr_users,
    enr_windows_settings,
};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = enr_tenants)]
pub struct TenantRow {
    pub id: TenantId,
    pub name: String,
    pub mdm_authority: MdmAuthority,
    pub authority_changed_at: Option<i64>,
    pub created_at: i64,
    pub device_limit_per_user: i32,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = enr_api_tokens)]
pub struct ApiTokenRow {
    pub id: TokenId,
    pub tenant_id: Option<TenantId>,
    pub role: Role,
    pub user_id: Option<UserId>,
    pub description: String,
    pub secret_hash: Vec<u8>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = enr_platform_restrictions)]
pub struct PlatformRestrictionRow {
    pub tenant_id: TenantId,
    pub platform: Platform,
    pub allowed: bool,
    pub personal_allowed: bool,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = enr_apple_push_certificates)]
pub struct ApplePushCertificateRow {
    pub tenant_id: TenantId,
    pub topic: String,
    pub serial_number: String,
    pub not_before: i64,
    pub not_after: i64,
    pub certificate_pem: String,
    pub sealed_private_key: Vec<u8>,
    pub uploaded_at: i64,
    pub consented_by: String,
    pub consented_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = enr_android_bindings)]
pub struct AndroidBindingRow {
    pub tenant_id: TenantId,
    pub state: String,
    pub enterprise_name: Option<String>,
    pub signup_url_name: Option<String>,
    pub sealed_service_account_key: Vec<u8>,
    pub pubsub_topic: Option<String>,
    /// JSON array of notification type names.
    pub notification_types: String,
    pub consented_by: String,
    pub consented_at: i64,
    pub bound_at: Option<i64>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = enr_windows_settings)]
pub struct WindowsSettingsRow {
    pub tenant_id: TenantId,
    pub automatic_enrollment: bool,
    pub auth_policy: String,
    pub bulk_secret_hash: Option<Vec<u8>>,
    /// JSON array of SHA-1 thumbprints (hex).
    pub bulk_thumbprints: String,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = enr_users)]
pub struct UserRow {
    pub id: UserId,
    pub tenant_id: TenantId,
    pub user_principal_name: String,
    pub display_name: String,
    pub licensed: bool,
    pub password_hash: Option<String>,
    pub created_at: i64,
    pub licence_changed_at: Option<i64>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = enr_ca)]
pub struct CaRow {
    pub id: String,
    pub certificate_der: Vec<u8>,
    pub sealed_private_key: Vec<u8>,
    pub not_after: i64,
    pub created_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = enr_issued_certificates)]
pub struct IssuedCertificateRow {
    pub serial: String,
    pub tenant_id: TenantId,
    pub device_id: DeviceId,
    pub enrollment_id: Option<EnrollmentId>,
    pub subject: String,
    pub not_before: i64,
    pub not_after: i64,
    pub issued_at: i64,
    pub revoked_at: Option<i64>,
    pub revocation_reason: Option<String>,
}
