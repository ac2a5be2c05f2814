//! Tables of mdm-apple.

diesel::table! {
    apl_enrollment_profiles (id) {
        id -> Binary,
        tenant_id -> Binary,
        device_id -> Binary,
        ownership -> Text,
        user_id -> Nullable<Binary>,
        platform -> Nullable<Text>,
        identity -> Text,
        token_hash -> Binary,
        challenge_hash -> Nullable<Binary>,
        created_by -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
        downloaded_at -> Nullable<BigInt>,
        challenge_used_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    apl_identities (cert_hash) {
        cert_hash -> Binary,
        profile_id -> Binary,
        tenant_id -> Binary,
        device_id -> Binary,
        serial -> Text,
        not_after -> BigInt,
        issued_at -> BigInt,
    }
}

diesel::table! {
    apl_enrollments (channel_id) {
        channel_id -> Text,
        device_channel -> Text,
        user_enrollment -> Bool,
        tenant_id -> Binary,
        device_id -> Binary,
        enrollment_id -> Binary,
        profile_id -> Nullable<Binary>,
        platform -> Text,
        ownership -> Text,
        user_id -> Nullable<Binary>,
        user_principal_name -> Nullable<Text>,
        state -> Text,
        cert_hash -> Nullable<Binary>,
        cert_subject -> Nullable<Text>,
        cert_not_after -> Nullable<BigInt>,
        topic -> Text,
        push_token -> Nullable<Binary>,
        push_magic -> Nullable<Text>,
        push_state -> Text,
        push_error -> Nullable<Text>,
        sealed_unlock_token -> Nullable<Binary>,
        sealed_bootstrap_token -> Nullable<Binary>,
        user_guid -> Nullable<Text>,
        user_short_name -> Nullable<Text>,
        awaiting_configuration -> Bool,
        authenticated_at -> BigInt,
        enrolled_at -> Nullable<BigInt>,
        ended_at -> Nullable<BigInt>,
        inventory_at -> Nullable<BigInt>,
        updated_at -> BigInt,
    }
}

diesel::table! {
    apl_device_info (channel_id) {
        channel_id -> Text,
        udid -> Nullable<Text>,
        serial_number -> Nullable<Text>,
        imei -> Nullable<Text>,
        meid -> Nullable<Text>,
        model -> Nullable<Text>,
        model_name -> Nullable<Text>,
        product_name -> Nullable<Text>,
        device_name -> Nullable<Text>,
        os_version -> Nullable<Text>,
        build_version -> Nullable<Text>,
        is_supervised -> Nullable<Bool>,
        passcode_present -> Nullable<Bool>,
        profiles -> Nullable<Text>,
        managed_apps -> Nullable<Text>,
        installed_app_count -> Nullable<Integer>,
        updated_at -> BigInt,
    }
}

diesel::table! {
    apl_commands (id) {
        id -> BigInt,
        command_uuid -> Text,
        channel_id -> Text,
        request_type -> Text,
        payload -> Binary,
        priority -> Bool,
        purpose -> Text,
        action_id -> Nullable<Binary>,
        state -> Text,
        attempts -> Integer,
        created_at -> BigInt,
        sent_at -> Nullable<BigInt>,
        expires_at -> BigInt,
    }
}

diesel::table! {
    apl_command_results (command_uuid) {
        command_uuid -> Text,
        channel_id -> Text,
        request_type -> Text,
        action_id -> Nullable<Binary>,
        status -> Text,
        error_chain -> Nullable<Text>,
        result -> Nullable<Binary>,
        completed_at -> BigInt,
    }
}

diesel::table! {
    apl_actions (action_id) {
        action_id -> Binary,
        channel_id -> Text,
        device_id -> Binary,
        kind -> Text,
        state -> Text,
        expires_at -> BigInt,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    apl_scep_ra (name) {
        name -> Text,
        certificate -> Binary,
        sealed_key -> Binary,
        created_at -> BigInt,
    }
}
