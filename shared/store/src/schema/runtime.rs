//! Tables of mdm-runtime: outbox, inbox, leases, idempotency records.

diesel::table! {
    rt_outbox (id) {
        id -> BigInt,
        producer -> Text,
        destination -> Text,
        kind -> Text,
        message_key -> Text,
        ordering_key -> Nullable<Text>,
        payload -> Text,
        state -> Text,
        attempts -> Integer,
        next_attempt_at -> BigInt,
        lease_until -> Nullable<BigInt>,
        last_error -> Nullable<Text>,
        created_at -> BigInt,
    }
}

diesel::table! {
    rt_inbox (receiver, message_key) {
        receiver -> Text,
        message_key -> Text,
        received_at -> BigInt,
    }
}

diesel::table! {
    rt_leases (name) {
        name -> Text,
        holder -> Text,
        expires_at -> BigInt,
    }
}

diesel::table! {
    rt_idempotency (scope, idem_key) {
        scope -> Text,
        idem_key -> Text,
        request_hash -> Text,
        status -> Nullable<Integer>,
        content_type -> Nullable<Text>,
        response_body -> Nullable<Binary>,
        created_at -> BigInt,
        location -> Nullable<Text>,
    }
}
