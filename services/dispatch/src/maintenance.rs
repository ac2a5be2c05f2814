//! The periodic work: ending actions past their expiry and purging unlock PINs.

use std::sync::Arc;
use std::time::Duration;

use mdm_domain::ActionState;
use mdm_runtime::jobs::Job;
use mdm_runtime::outbox;

use crate::actions;
use crate::dispatcher::{Dispatcher, delivery_key, management_state, state_message};
use crate::error::Error;

pub fn job(dispatcher: Arc<Dispatcher>) -> Job {
    let every = Duration::from_secs(dispatcher.config.maintenance_secs.max(1));
    Job::new("dispatch-maintenance", every, move || {
        let d = dispatcher.clone();
        async move {
            let (expired, purged) = run(&d).await?;
            Ok(format!(
                "{expired} actions expired, {purged} unlock PINs purged"
            ))
        }
    })
}

/// Expires due actions and purges PINs; answers how many of each.
pub async fn run(d: &Dispatcher) -> Result<(usize, usize), Error> {
    let now = d.clock.now();
    let grace = chrono::Duration::hours(i64::try_from(d.config.expiry_grace_hours).unwrap_or(24));
    let out = d.outbox.clone();
    d.store
        .write(move |c| {
            let due = actions::due_for_expiry(c, now, grace)?;
            for action in &due {
                // An action that never left is withdrawn; one the adapter holds is
                // cancelled there too, so that it is not delivered after all.
                let withdrawn = action.state == ActionState::Pending
                    && outbox::withdraw(c, &delivery_key(action.id), now)?;
                if !withdrawn {
                    let message = mdm_api::internal::adapter::CancelAction {
                        action_id: action.id,
                        device_id: action.device_id,
                        family: action.platform.family(),
                    };
                    out.enqueue(
                        c,
                        &format!("dispatch:cancel:{}", action.id),
                        Some(&action.device_id.to_string()),
                        &message,
                    )?;
                }
                actions::set_state(
                    c,
                    action.id,
                    ActionState::Expired,
                    Some("expired"),
                    Some("the device did not receive or answer it in time"),
                    now,
                )?;
                if let Some((state, remove)) = management_state(action, ActionState::Expired) {
                    out.enqueue_many(
                        c,
                        &[state_message(
                            action.device_id,
                            state,
                            Some(action.id),
                            remove,
                            now,
                        )],
                    )?;
                }
            }
            let purged = actions::purge_pins(c, now)?;
            Ok::<_, Error>((due.len(), purged))
        })
        .await
}
