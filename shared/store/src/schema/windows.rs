//! Tables of mdm-windows.

diesel::table! {
    win_enrollments (id) {
        id -> Binary,
        device_id -> Binary,
        tenant_id -> Binary,
        user_id -> Nullable<Binary>,
        user_principal_name -> Nullable<Text>,
        windows_device_id -> Text,
        hw_device_id -> Nullable<Text>,
        device_type -> Text,
        os_edition -> Nullable<Integer>,
        os_version -> Nullable<Text>,
        management_mode -> Text,
        ownership -> Text,
        enrollment_type -> Text,
        directory_joined -> Bool,
        auth_method -> Text,
        state -> Text,
        channel_uri -> Nullable<Text>,
        channel_state -> Nullable<Text>,
        last_facts -> Nullable<Text>,
        inventory_at -> Nullable<BigInt>,
        enrolled_at -> BigInt,
        ended_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    win_certificates (sha256) {
        sha256 -> Binary,
        enrollment_id -> Binary,
        serial -> Text,
        not_before -> BigInt,
        not_after -> BigInt,
        issued_at -> BigInt,
        revoked_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    win_commands (id) {
        id -> Binary,
        device_id -> Binary,
        action_id -> Nullable<Binary>,
        kind -> Text,
        step -> Integer,
        last_step -> Bool,
        verb -> Text,
        loc_uri -> Text,
        data -> Nullable<Text>,
        meta_format -> Nullable<Text>,
        priority -> Bool,
        state -> Text,
        status_code -> Nullable<Text>,
        sealed_result -> Nullable<Binary>,
        expires_at -> BigInt,
        created_at -> BigInt,
        delivered_at -> Nullable<BigInt>,
        completed_at -> Nullable<BigInt>,
        delivered_in -> Nullable<Text>,
    }
}

diesel::joinable!(win_certificates -> win_enrollments (enrollment_id));
diesel::allow_tables_to_appear_in_same_query!(win_enrollments, win_certificates, win_commands);
