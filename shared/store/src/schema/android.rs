//! Tables of mdm-android.

diesel::table! {
    and_enterprises (tenant_id) {
        tenant_id -> Binary,
        enterprise_name -> Text,
        project_id -> Nullable<Text>,
        display_name -> Nullable<Text>,
        pubsub_topic -> Nullable<Text>,
        notification_types -> Text,
        default_policy -> Text,
        upgraded_at -> Nullable<BigInt>,
        bound_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    and_enrollment_tokens (id) {
        id -> Binary,
        name -> Text,
        tenant_id -> Binary,
        profile -> Text,
        user_id -> Nullable<Binary>,
        policy_name -> Text,
        expires_at -> BigInt,
        created_at -> BigInt,
        revoked_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    and_devices (device_id) {
        device_id -> Binary,
        tenant_id -> Binary,
        enrollment_id -> Binary,
        amapi_name -> Text,
        management_mode -> Text,
        ownership -> Text,
        user_id -> Nullable<Binary>,
        enrollment_token_name -> Nullable<Text>,
        state -> Text,
        api_level -> Nullable<Integer>,
        facts -> Nullable<Text>,
        facts_hash -> Nullable<Text>,
        last_report_at -> Nullable<BigInt>,
        seen_at -> Nullable<BigInt>,
        seen_sent_at -> Nullable<BigInt>,
        attempts -> Integer,
        next_attempt_at -> Nullable<BigInt>,
        lease_until -> Nullable<BigInt>,
        last_error -> Nullable<Text>,
        enrolled_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    and_actions (action_id) {
        action_id -> Binary,
        tenant_id -> Binary,
        device_id -> Binary,
        kind -> Text,
        phase -> Text,
        params -> Text,
        sealed_passcode -> Nullable<Binary>,
        operation_name -> Nullable<Text>,
        priority -> Bool,
        attempts -> Integer,
        next_attempt_at -> BigInt,
        lease_until -> Nullable<BigInt>,
        attempt_started_at -> Nullable<BigInt>,
        last_error -> Nullable<Text>,
        expires_at -> BigInt,
        requested_at -> BigInt,
        issued_at -> Nullable<BigInt>,
        news_at -> Nullable<BigInt>,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    and_pubsub_receipts (message_id) {
        message_id -> Text,
        notification_type -> Text,
        outcome -> Text,
        received_at -> BigInt,
    }
}

diesel::table! {
    and_early_operations (operation_name) {
        operation_name -> Text,
        payload -> Text,
        received_at -> BigInt,
    }
}
