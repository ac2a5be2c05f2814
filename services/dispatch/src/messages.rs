//! Messages dispatch receives: adapters' reports, inventory's deletes and removals,
//! enrollment's licence removals and policy changes, every service's audit events.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use mdm_api::Service;
use mdm_api::internal::dispatch::{
    ActionReport, AuditEvent, DeleteRequested, DevicesRemoved, UnenrollUser,
};
use mdm_api::internal::enrollment::PolicyChanged;
use mdm_api::internal::inventory::DeviceFilter;
use mdm_domain::{ActionKind, ActionState};
use mdm_runtime::inbox::{AfterCommit, Delivery, HandlerError, Inbox};
use mdm_store::DbConnection;

use crate::bulk::{self, Targets};
use crate::dispatcher::{Dispatcher, cancel_in_transaction, management_state, state_message};
use crate::{actions, audit_trail};

pub fn inbox(dispatcher: Arc<Dispatcher>) -> Inbox {
    let reports = dispatcher.clone();
    let deletes = dispatcher.clone();
    let removals = dispatcher.clone();
    let unenrolls = dispatcher.clone();
    let policies = dispatcher;
    Inbox::new(Service::Dispatch)
        .on::<ActionReport, _>(move |c, d, m| on_report(&reports, c, d, m))
        .on::<DeleteRequested, _>(move |c, d, m| on_delete(&deletes, c, d, m))
        .on::<DevicesRemoved, _>(move |c, d, m| on_removed(&removals, c, d, m))
        .on::<UnenrollUser, _>(move |c, d, m| on_unenroll(&unenrolls, c, d, m))
        .on::<PolicyChanged, _>(move |_, _, m| {
            policies.policy.invalidate(m.tenant_id);
            Ok(None)
        })
        .on::<AuditEvent, _>(|c, _, m| {
            audit_trail::insert(c, &[m]).map_err(into_handler)?;
            Ok(None)
        })
}

fn into_handler(error: crate::error::Error) -> HandlerError {
    match error {
        crate::error::Error::Store(e) => e.into(),
        other => HandlerError::Retry(other.to_string()),
    }
}

/// An adapter's news about an action. States only move forward: a repeat or a late
/// report is acknowledged and ignored.
fn on_report(
    d: &Dispatcher,
    conn: &mut DbConnection,
    _: &Delivery<'_>,
    report: ActionReport,
) -> Result<AfterCommit, HandlerError> {
    let Some(action) = actions::get(conn, report.action_id).map_err(into_handler)? else {
        return Err(HandlerError::Reject(format!(
            "no action {}",
            report.action_id
        )));
    };
    if action.state == report.state || !action.state.can_become(report.state) {
        tracing::debug!(action = %action.id, from = %action.state, to = %report.state, "report ignored");
        return Ok(None);
    }
    // A `sent` report for an action whose cancel was asked changes nothing: the cancel
    // reaches the adapter next, in order.
    actions::set_state(
        conn,
        action.id,
        report.state,
        report.error_code.as_deref(),
        report.error_detail.as_deref(),
        report.at,
    )
    .map_err(into_handler)?;
    if let Some((state, remove)) = management_state(&action, report.state) {
        d.outbox
            .enqueue_many(
                conn,
                &[state_message(
                    action.device_id,
                    state,
                    Some(action.id),
                    remove,
                    report.at,
                )],
            )
            .map_err(HandlerError::from)?;
    }
    tracing::debug!(action = %action.id, kind = %action.kind, state = %report.state, "action moved on");
    Ok(None)
}

/// A device deleted through inventory: its retire becomes a delete action, checked and
/// sent by the bulk worker like any other.
fn on_delete(
    d: &Dispatcher,
    conn: &mut DbConnection,
    delivery: &Delivery<'_>,
    message: DeleteRequested,
) -> Result<AfterCommit, HandlerError> {
    bulk::create_job(
        conn,
        message.tenant_id,
        ActionKind::Delete,
        Default::default(),
        Targets::Devices(vec![message.device_id]),
        &message.requested_by,
        None,
        delivery.now,
    )
    .map_err(into_handler)?;
    Ok(Some(wake(d)))
}

/// A licence removed: every device of the user is unenrolled.
fn on_unenroll(
    d: &Dispatcher,
    conn: &mut DbConnection,
    delivery: &Delivery<'_>,
    message: UnenrollUser,
) -> Result<AfterCommit, HandlerError> {
    let filter = DeviceFilter {
        user_id: Some(message.user_id),
        ..DeviceFilter::default()
    };
    bulk::create_job(
        conn,
        message.tenant_id,
        ActionKind::Retire,
        Default::default(),
        Targets::Filter(filter),
        "system:licence-removed",
        None,
        delivery.now,
    )
    .map_err(into_handler)?;
    Ok(Some(wake(d)))
}

fn wake(d: &Dispatcher) -> futures_util::future::BoxFuture<'static, ()> {
    let wake = d.bulk_wake.clone();
    Box::pin(async move { wake.notify_one() })
}

/// Devices removed without their help: their open actions end.
fn on_removed(
    d: &Dispatcher,
    conn: &mut DbConnection,
    _: &Delivery<'_>,
    message: DevicesRemoved,
) -> Result<AfterCommit, HandlerError> {
    let open = actions::open_for_devices(conn, &message.device_ids).map_err(into_handler)?;
    for action in open {
        end(d, conn, &action, message.at)?;
    }
    Ok(None)
}

fn end(
    d: &Dispatcher,
    conn: &mut DbConnection,
    action: &mdm_store::models::dispatch::ActionRow,
    now: DateTime<Utc>,
) -> Result<(), HandlerError> {
    if action.state.is_cancelable() {
        cancel_in_transaction(
            conn,
            &d.outbox,
            action,
            "device_removed",
            "the device's record was removed",
            now,
        )
        .map_err(into_handler)?;
    }
    actions::set_state(
        conn,
        action.id,
        ActionState::Canceled,
        Some("device_removed"),
        Some("the device's record was removed"),
        now,
    )
    .map_err(into_handler)?;
    Ok(())
}
