//! The messages inventory receives: from the adapters (enrolled, facts, check-ins,
//! unenrolled) and from dispatch (management state changes). Each handler runs inside
//! the inbox's transaction; a message about a device the registry no longer holds (its
//! record was removed) is applied as nothing.

use std::sync::Arc;

use mdm_api::Service;
use mdm_api::internal::enrollment::PolicyChanged;
use mdm_api::internal::inventory::{
    DeviceEnrolled, DeviceFactsReported, DeviceUnenrolled, DevicesSeen, ManagementStateChanged,
};
use mdm_domain::{ManagementState, Platform};
use mdm_runtime::audit;
use mdm_runtime::inbox::{AfterCommit, Delivery, HandlerError, Inbox};
use mdm_store::DbConnection;
use mdm_store::models::inventory::DeviceRow;
use serde_json::json;

use crate::devices::{self, EnrollError};
use crate::routes::State;
use crate::{autopilot, directory, removal};

pub fn inbox(state: Arc<State>) -> Inbox {
    let seen_state = state.clone();
    let policy_state = state.clone();
    let changed_state = state;
    Inbox::new(Service::Inventory)
        .on::<PolicyChanged, _>(move |_, _, message| {
            policy_state.policies.invalidate(message.tenant_id);
            Ok(None)
        })
        .on::<DeviceEnrolled, _>(enrolled)
        .on::<DeviceFactsReported, _>(facts_reported)
        .on::<DevicesSeen, _>(move |c, _, message| seen(&seen_state, c, message))
        .on::<DeviceUnenrolled, _>(unenrolled)
        .on::<ManagementStateChanged, _>(move |c, delivery, message| {
            state_changed(&changed_state, c, delivery, message)
        })
}

/// A new device, or a known one enrolling again: `managed`, with a directory record.
fn enrolled(
    c: &mut DbConnection,
    delivery: &Delivery<'_>,
    message: DeviceEnrolled,
) -> Result<AfterCommit, HandlerError> {
    let row = devices::enroll(c, &message, delivery.now).map_err(|e| match e {
        EnrollError::OtherTenant(_) => HandlerError::Reject(e.to_string()),
        EnrollError::Store(e) => e.into(),
    })?;
    directory::ensure_for_device(c, &row, delivery.now)?;
    link_autopilot(c, &row)?;
    Ok(None)
}

fn facts_reported(
    c: &mut DbConnection,
    delivery: &Delivery<'_>,
    message: DeviceFactsReported,
) -> Result<AfterCommit, HandlerError> {
    let Some(row) = devices::report_facts(c, message.device_id, &message.facts, delivery.now)?
    else {
        tracing::debug!(device = %message.device_id, "facts about an unknown device ignored");
        return Ok(None);
    };
    if let (Some(_), Some(name)) = (&message.facts.device_name, &row.device_name) {
        directory::rename(c, row.id, name)?;
    }
    if message.facts.serial_number.is_some() {
        link_autopilot(c, &row)?;
    }
    Ok(None)
}

/// A Windows device names the Autopilot registration with its serial number.
fn link_autopilot(c: &mut DbConnection, row: &DeviceRow) -> Result<(), HandlerError> {
    if row.platform == Platform::Windows
        && let Some(serial) = &row.serial_number
    {
        autopilot::link(c, row.tenant_id, row.id, serial)?;
    }
    Ok(())
}

fn seen(
    state: &State,
    c: &mut DbConnection,
    message: DevicesSeen,
) -> Result<AfterCommit, HandlerError> {
    devices::mark_seen(c, &message.seen)?;
    let (counter, count) = (state.metrics.checkins.clone(), message.seen.len() as u64);
    Ok(Some(Box::pin(async move { counter.inc_by(count) })))
}

/// Management ended on the device's side: its directory record goes, its slot is free.
fn unenrolled(
    c: &mut DbConnection,
    _: &Delivery<'_>,
    message: DeviceUnenrolled,
) -> Result<AfterCommit, HandlerError> {
    let id = message.device_id;
    if devices::set_state(c, id, ManagementState::Unenrolled, message.at)?.is_none() {
        tracing::debug!(device = %id, "unenrollment of an unknown device ignored");
        return Ok(None);
    }
    directory::remove_for_devices(c, &[id])?;
    Ok(None)
}

/// From dispatch: an action moved the device's state. A retire or factory reset removes
/// the directory record; a completed delete (`remove_record`) removes the device's whole
/// record, and its adapter is told.
fn state_changed(
    state: &State,
    c: &mut DbConnection,
    delivery: &Delivery<'_>,
    message: ManagementStateChanged,
) -> Result<AfterCommit, HandlerError> {
    let id = message.device_id;
    if message.remove_record {
        let rows = removal::remove_records(c, &[id])?;
        removal::tell_adapters(c, &state.outbox, &rows, delivery.now)?;
        for row in &rows {
            let event = audit::with_detail(
                audit::on_device(
                    audit::system_event(
                        row.tenant_id,
                        message.at,
                        "device.removed",
                        "managedDevice",
                        id,
                    ),
                    id,
                ),
                json!({ "actionId": message.action_id, "managementState": message.state }),
            );
            audit::record(&state.outbox, c, &event)?;
        }
        let (counter, count) = (state.metrics.devices_removed.clone(), rows.len() as u64);
        return Ok(Some(Box::pin(async move {
            counter.with_label_values(&["deleted"]).inc_by(count);
        })));
    }
    if devices::set_state(c, id, message.state, message.at)?.is_none() {
        tracing::debug!(device = %id, "state change of an unknown device ignored");
        return Ok(None);
    }
    if !message.state.is_managed() {
        // Retired, wiped or unenrolled: out of the directory, the user's slot is free.
        directory::remove_for_devices(c, &[id])?;
    }
    Ok(None)
}
