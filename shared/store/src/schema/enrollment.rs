//! Tables of mdm-enrollment.

diesel::table! {
    enr_tenants (id) {
        id -> Binary,
        name -> Text,
        mdm_authority -> Text,
        authority_changed_at -> Nullable<BigInt>,
        created_at -> BigInt,
        device_limit_per_user -> Integer,
    }
}

diesel::table! {
    enr_api_tokens (id) {
        id -> Binary,
        tenant_id -> Nullable<Binary>,
        role -> Text,
        user_id -> Nullable<Binary>,
        description -> Text,
        secret_hash -> Binary,
        created_at -> BigInt,
        expires_at -> Nullable<BigInt>,
        revoked_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    enr_platform_restrictions (tenant_id, platform) {
        tenant_id -> Binary,
        platform -> Text,
        allowed -> Bool,
        personal_allowed -> Bool,
    }
}

diesel::table! {
    enr_apple_push_certificates (tenant_id) {
        tenant_id -> Binary,
        topic -> Text,
        serial_number -> Text,
        not_before -> BigInt,
        not_after -> BigInt,
        certificate_pem -> Text,
        sealed_private_key -> Binary,
        uploaded_at -> BigInt,
        consented_by -> Text,
        consented_at -> BigInt,
    }
}

diesel::table! {
    enr_android_bindings (tenant_id) {
        tenant_id -> Binary,
        state -> Text,
        enterprise_name -> Nullable<Text>,
        signup_url_name -> Nullable<Text>,
        sealed_service_account_key -> Binary,
        pubsub_topic -> Nullable<Text>,
        notification_types -> Text,
        consented_by -> Text,
        consented_at -> BigInt,
        bound_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    enr_windows_settings (tenant_id) {
        tenant_id -> Binary,
        automatic_enrollment -> Bool,
        auth_policy -> Text,
        bulk_secret_hash -> Nullable<Binary>,
        bulk_thumbprints -> Text,
        updated_at -> BigInt,
    }
}

diesel::table! {
    enr_users (id) {
        id -> Binary,
        tenant_id -> Binary,
        user_principal_name -> Text,
        display_name -> Text,
        licensed -> Bool,
        password_hash -> Nullable<Text>,
        created_at -> BigInt,
        licence_changed_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    enr_ca (id) {
        id -> Text,
        certificate_der -> Binary,
        sealed_private_key -> Binary,
        not_after -> BigInt,
        created_at -> BigInt,
    }
}

diesel::table! {
    enr_issued_certificates (serial) {
        serial -> Text,
        tenant_id -> Binary,
        device_id -> Binary,
        enrollment_id -> Nullable<Binary>,
        subject -> Text,
        not_before -> BigInt,
        not_after -> BigInt,
        issued_at -> BigInt,
        revoked_at -> Nullable<BigInt>,
        revocation_reason -> Nullable<Text>,
    }
}
