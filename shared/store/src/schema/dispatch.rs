//! Tables of mdm-dispatch.

diesel::table! {
    dsp_actions (id) {
        id -> Binary,
        tenant_id -> Binary,
        device_id -> Binary,
        device_name -> Nullable<Text>,
        platform -> Text,
        kind -> Text,
        state -> Text,
        params -> Text,
        priority -> Bool,
        requested_by -> Text,
        self_service -> Bool,
        bulk_job_id -> Nullable<Binary>,
        sealed_unlock_pin -> Nullable<Binary>,
        pin_expires_at -> Nullable<BigInt>,
        cancel_requested -> Bool,
        error_code -> Nullable<Text>,
        error_detail -> Nullable<Text>,
        created_at -> BigInt,
        updated_at -> BigInt,
        expires_at -> BigInt,
    }
}

diesel::table! {
    dsp_bulk_jobs (id) {
        id -> Binary,
        tenant_id -> Binary,
        kind -> Text,
        params -> Text,
        filter -> Nullable<Text>,
        requested_by -> Text,
        actor_role -> Nullable<Text>,
        state -> Text,
        total -> Integer,
        created_at -> BigInt,
        updated_at -> BigInt,
        completed_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    dsp_bulk_targets (job_id, device_id) {
        job_id -> Binary,
        device_id -> Binary,
        outcome -> Text,
        refusal_code -> Nullable<Text>,
        refusal_detail -> Nullable<Text>,
    }
}

diesel::table! {
    dsp_audit_events (id) {
        id -> Binary,
        tenant_id -> Nullable<Binary>,
        actor -> Text,
        actor_role -> Nullable<Text>,
        activity -> Text,
        target_type -> Text,
        target_id -> Text,
        device_id -> Nullable<Binary>,
        outcome -> Text,
        detail -> Text,
        remote_addr -> Nullable<Text>,
        at -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(dsp_actions, dsp_bulk_targets);
