//! Tables of mdm-inventory.

diesel::table! {
    inv_devices (id) {
        id -> Binary,
        tenant_id -> Binary,
        enrollment_id -> Binary,
        platform -> Text,
        os_version -> Nullable<Text>,
        ownership -> Text,
        management_mode -> Nullable<Text>,
        management_state -> Text,
        user_id -> Nullable<Binary>,
        user_principal_name -> Nullable<Text>,
        device_name -> Nullable<Text>,
        model -> Nullable<Text>,
        manufacturer -> Nullable<Text>,
        serial_number -> Nullable<Text>,
        imei -> Nullable<Text>,
        is_passcode_present -> Nullable<Bool>,
        is_supervised -> Nullable<Bool>,
        is_encrypted -> Nullable<Bool>,
        directory_joined -> Bool,
        identity_certificate_expires_at -> Nullable<BigInt>,
        enrolled_at -> BigInt,
        last_sync_at -> Nullable<BigInt>,
        state_changed_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    inv_directory_records (id) {
        id -> Binary,
        tenant_id -> Binary,
        device_id -> Nullable<Binary>,
        user_id -> Nullable<Binary>,
        display_name -> Nullable<Text>,
        platform -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    inv_cleanup_settings (tenant_id) {
        tenant_id -> Binary,
        inactivity_days -> Nullable<Integer>,
        updated_at -> BigInt,
    }
}

diesel::table! {
    inv_autopilot_registrations (id) {
        id -> Binary,
        tenant_id -> Binary,
        serial_number -> Text,
        hardware_identifier -> Text,
        group_tag -> Nullable<Text>,
        device_id -> Nullable<Binary>,
        created_at -> BigInt,
        registered_at -> BigInt,
    }
}

diesel::table! {
    inv_groups (id) {
        id -> Binary,
        tenant_id -> Binary,
        display_name -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    inv_group_members (group_id, device_id) {
        group_id -> Binary,
        device_id -> Binary,
        added_at -> BigInt,
    }
}

diesel::joinable!(inv_group_members -> inv_groups (group_id));

diesel::allow_tables_to_appear_in_same_query!(
    inv_devices,
    inv_directory_records,
    inv_cleanup_settings,
    inv_autopilot_registrations,
    inv_groups,
    inv_group_members,
);
