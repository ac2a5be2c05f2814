//! Background work: expiry, re-push, periodic inventory, result retention (jobs that one
//! replica runs), and the flushes of last-seen times and deferred `active` reports.

use std::sync::Arc;
use std::time::Duration;

use mdm_runtime::jobs::Job;
use mdm_runtime::shutdown::Shutdown;
use mdm_store::{StoreError, to_millis};

use crate::service::{Apple, hours};
use crate::state::{self, Phase};
use crate::{actions, followup, seen, store};

pub fn expiry(apple: Arc<Apple>) -> Job {
    Job::new("apple-expiry", Duration::from_secs(60), move || {
        let apple = apple.clone();
        async move {
            let now = apple.now();
            let app = apple.clone();
            let (commands, actions) = apple
                .store
                .write(move |c| actions::expire_due(&app, c, now))
                .await?;
            apple.dequeued(&commands);
            Ok(format!(
                "expired {} commands and {actions} actions",
                commands.len()
            ))
        }
    })
}

pub fn repush(apple: Arc<Apple>) -> Job {
    Job::new("apple-repush", Duration::from_secs(60), move || {
        let apple = apple.clone();
        async move { Ok(format!("re-pushed {} devices", run_repush(&apple).await?)) }
    })
}

/// Pushes channels with commands waiting whose device has not come since its last push
/// (or since this process started), once per `repush_after_secs`.
pub async fn run_repush(apple: &Apple) -> anyhow::Result<usize> {
    let keys = apple
        .store
        .read(|c| store::channels_with_queued(c, 100_000))
        .await?;
    let now = apple.now_millis();
    let after =
        i64::try_from(apple.config.repush_after_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let mut pushed = 0;
    for key in keys {
        let Ok(Some(channel)) = apple.channel(&key).await else {
            continue;
        };
        let due = {
            let c = state::lock(&channel);
            c.phase == Phase::Enrolled
                && !c.queue.is_empty()
                && c.last_seen_at <= c.last_push_at
                && now - c.last_push_at >= after
        };
        if due {
            apple.push(&channel).await;
            pushed += 1;
        }
    }
    Ok(pushed)
}

pub fn inventory(apple: Arc<Apple>) -> Job {
    Job::new("apple-inventory", Duration::from_secs(3600), move || {
        let apple = apple.clone();
        async move {
            Ok(format!(
                "queued inventory for {} devices",
                run_inventory(&apple).await?
            ))
        }
    })
}

/// Queues the inventory queries of devices whose last inventory is older than the
/// interval.
pub async fn run_inventory(apple: &Apple) -> anyhow::Result<usize> {
    let now = apple.now_millis();
    let before = now - hours(apple.config.inventory_interval_hours);
    let keys = apple
        .store
        .read(move |c| store::due_for_inventory(c, before, 5000))
        .await?;
    let mut queued = 0;
    for key in keys {
        let Ok(Some(channel)) = apple.channel(&key).await else {
            continue;
        };
        let (platform, pending) = {
            let c = state::lock(&channel);
            let pending = c
                .queue
                .iter()
                .any(|q| q.purpose == state::Purpose::Inventory);
            (c.platform, pending)
        };
        let rows = if pending {
            Vec::new()
        } else {
            apple.inventory_commands(&key, platform, now)
        };
        let owned = key.clone();
        let inserted = apple
            .store
            .write(move |c| {
                let inserted = store::insert_commands(c, &rows)?;
                store::set_inventory_at(c, &[owned], now)?;
                Ok::<_, StoreError>(inserted)
            })
            .await?;
        if !inserted.is_empty() {
            queued += 1;
            apple.enqueued(&key, inserted).await;
        }
    }
    Ok(queued)
}

pub fn retention(apple: Arc<Apple>) -> Job {
    Job::new("apple-retention", Duration::from_secs(3600), move || {
        let apple = apple.clone();
        async move {
            let days = i64::try_from(apple.config.result_retention_days).unwrap_or(3650);
            let before = to_millis(apple.now() - chrono::Duration::days(days));
            let pruned = apple.store.write(move |c| store::prune(c, before)).await?;
            Ok(format!("pruned {pruned} results and actions"))
        }
    })
}

/// Flushes last-seen times as DevicesSeen messages.
pub async fn flush_seen(apple: Arc<Apple>, shutdown: Shutdown) {
    let every = Duration::from_secs(apple.config.seen_flush_secs.max(1));
    loop {
        let stop = tokio::select! {
            _ = shutdown.wait() => true,
            _ = tokio::time::sleep(every) => false,
        };
        let entries = apple.seen.take();
        if !entries.is_empty() {
            let outbox = apple.outbox.clone();
            let written = entries.clone();
            if let Err(error) = apple
                .group
                .write(move |c| seen::flush(c, &outbox, &written))
                .await
            {
                tracing::warn!(%error, "last-seen times not flushed; kept for the next flush");
                apple.seen.restore(entries);
            }
        }
        if stop {
            return;
        }
    }
}

/// Writes the deferred `active` reports of actions still unanswered after a second.
pub async fn flush_active(apple: Arc<Apple>, shutdown: Shutdown) {
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        let now = apple.now();
        let due = apple.active.due(to_millis(now) - 1000);
        if due.is_empty() {
            continue;
        }
        let outbox = apple.outbox.clone();
        if let Err(error) = apple
            .group
            .write(move |c| followup::write_active(c, &outbox, &due, now))
            .await
        {
            tracing::warn!(%error, "active reports not written");
        }
    }
}

/// Fetches the device-identity CA until it is known.
pub async fn fetch_ca(apple: Arc<Apple>, shutdown: Shutdown) {
    while !apple.auth.has_our_ca() {
        apple.ensure_ca().await;
        if apple.auth.has_our_ca() {
            return;
        }
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}
