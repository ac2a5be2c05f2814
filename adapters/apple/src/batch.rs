//! The hot path's writes, batched: deliveries (a command marked sent), NotNow (put back)
//! and completions (a command's answer recorded and its effects written) from many
//! concurrent requests share one transaction through the runtime's
//! [`GroupCommit`]. Each batch runs a few set-based statements (`UPDATE ... WHERE
//! command_uuid IN (...)`, `DELETE ... RETURNING`) instead of statements per request,
//! and every request is answered only after its batch committed.

use std::collections::HashMap;
use std::sync::Arc;

use mdm_runtime::group_commit::GroupCommit;
use mdm_store::models::apple::{CommandResultRow, CommandRow};
use mdm_store::{DbConnection, StoreError};
use tokio::sync::{mpsc, oneshot};

use crate::store;

/// What a completion's follow-up did, to apply in memory after the commit.
#[derive(Debug, Default)]
pub struct FollowUp {
    /// Commands it queued (the next steps of a retire).
    pub enqueued: Vec<CommandRow>,
    /// The channel's enrollment ended (wiped, retired).
    pub ended: bool,
    /// Push the channel once committed.
    pub push: bool,
}

/// Work done with the answered command's row, inside the batch's transaction.
pub type FollowUpFn =
    Box<dyn FnOnce(&mut DbConnection, &CommandRow) -> Result<FollowUp, StoreError> + Send>;

enum Op {
    Deliver {
        uuid: Arc<str>,
        done: oneshot::Sender<Result<bool, StoreError>>,
    },
    Requeue {
        uuid: Arc<str>,
        done: oneshot::Sender<Result<(), StoreError>>,
    },
    Complete {
        result: CommandResultRow,
        follow_up: Option<FollowUpFn>,
        done: oneshot::Sender<Result<Option<FollowUp>, StoreError>>,
    },
}

/// Submits hot-path writes; cheap to clone.
#[derive(Clone)]
pub struct Batcher {
    sender: mpsc::Sender<Op>,
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the batch writer has stopped".into())
}

impl Batcher {
    /// Starts the batching task; `now` stamps deliveries.
    pub fn start(group: GroupCommit, clock: mdm_runtime::SharedClock, max_batch: usize) -> Self {
        let (sender, receiver) = mpsc::channel(max_batch.max(1) * 8);
        tokio::spawn(run(group, clock, receiver, max_batch.max(1)));
        Self { sender }
    }

    /// Marks a command delivered; false when it left the queue meanwhile (canceled,
    /// expired) and must not be sent.
    pub async fn deliver(&self, uuid: Arc<str>) -> Result<bool, StoreError> {
        let (done, rx) = oneshot::channel();
        self.sender
            .send(Op::Deliver { uuid, done })
            .await
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    /// Puts a command answered NotNow back in the queue.
    pub async fn requeue(&self, uuid: Arc<str>) -> Result<(), StoreError> {
        let (done, rx) = oneshot::channel();
        self.sender
            .send(Op::Requeue { uuid, done })
            .await
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    /// Records a command's outcome and runs its follow-up; `None` when the command was no
    /// longer queued (answered before, expired or canceled): nothing was done.
    pub async fn complete(
        &self,
        result: CommandResultRow,
        follow_up: Option<FollowUpFn>,
    ) -> Result<Option<FollowUp>, StoreError> {
        let (done, rx) = oneshot::channel();
        self.sender
            .send(Op::Complete {
                result,
                follow_up,
                done,
            })
            .await
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

async fn run(
    group: GroupCommit,
    clock: mdm_runtime::SharedClock,
    mut receiver: mpsc::Receiver<Op>,
    max_batch: usize,
) {
    while let Some(first) = receiver.recv().await {
        let mut ops = vec![first];
        while ops.len() < max_batch {
            match receiver.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        let now = clock.now().timestamp_millis();
        let (work, replies) = split(ops);
        // Not awaited here: batches that queue up while a transaction runs are committed
        // together by the group commit, and this loop goes on collecting.
        let group = group.clone();
        tokio::spawn(async move {
            let outcome = group.write(move |c| execute(c, work, now)).await;
            reply(replies, outcome);
        });
    }
}

struct Work {
    deliver: Vec<Arc<str>>,
    requeue: Vec<Arc<str>>,
    complete: Vec<(CommandResultRow, Option<FollowUpFn>)>,
}

type DeliverReply = oneshot::Sender<Result<bool, StoreError>>;

struct Replies {
    deliver: Vec<(Arc<str>, DeliverReply)>,
    requeue: Vec<oneshot::Sender<Result<(), StoreError>>>,
    complete: Vec<oneshot::Sender<Result<Option<FollowUp>, StoreError>>>,
}

struct Outcome {
    delivered: std::collections::HashSet<String>,
    completed: Vec<Result<Option<FollowUp>, String>>,
}

fn split(ops: Vec<Op>) -> (Work, Replies) {
    let mut work = Work {
        deliver: Vec::new(),
        requeue: Vec::new(),
        complete: Vec::new(),
    };
    let mut replies = Replies {
        deliver: Vec::new(),
        requeue: Vec::new(),
        complete: Vec::new(),
    };
    for op in ops {
        match op {
            Op::Deliver { uuid, done } => {
                work.deliver.push(uuid.clone());
                replies.deliver.push((uuid, done));
            }
            Op::Requeue { uuid, done } => {
                work.requeue.push(uuid);
                replies.requeue.push(done);
            }
            Op::Complete {
                result,
                follow_up,
                done,
            } => {
                work.complete.push((result, follow_up));
                replies.complete.push(done);
            }
        }
    }
    (work, replies)
}

fn execute(c: &mut DbConnection, work: Work, now: i64) -> Result<Outcome, StoreError> {
    let mut completed = Vec::with_capacity(work.complete.len());
    if !work.complete.is_empty() {
        let uuids: Vec<&str> = work
            .complete
            .iter()
            .map(|(r, _)| r.command_uuid.as_str())
            .collect();
        let taken: HashMap<String, CommandRow> = store::take_commands(c, &uuids)?
            .into_iter()
            .map(|row| (row.command_uuid.clone(), row))
            .collect();
        let results: Vec<CommandResultRow> = work
            .complete
            .iter()
            .filter(|(r, _)| taken.contains_key(&r.command_uuid))
            .map(|(r, _)| r.clone())
            .collect();
        store::insert_results(c, &results)?;
        for (result, follow_up) in work.complete {
            let Some(row) = taken.get(&result.command_uuid) else {
                completed.push(Ok(None));
                continue;
            };
            // A failing follow-up fails the batch: every request in it is answered with an
            // error and the devices send their answers again, so no effect is lost.
            let outcome = match follow_up {
                Some(follow_up) => follow_up(c, row)?,
                None => FollowUp::default(),
            };
            completed.push(Ok(Some(outcome)));
        }
    }
    if !work.requeue.is_empty() {
        let uuids: Vec<&str> = work.requeue.iter().map(|u| &**u).collect();
        store::requeue(c, &uuids)?;
    }
    let delivered = if work.deliver.is_empty() {
        Default::default()
    } else {
        let uuids: Vec<&str> = work.deliver.iter().map(|u| &**u).collect();
        store::mark_sent(c, &uuids, now)?.into_iter().collect()
    };
    Ok(Outcome {
        delivered,
        completed,
    })
}

fn reply(replies: Replies, outcome: Result<Outcome, StoreError>) {
    match outcome {
        Ok(outcome) => {
            for (uuid, done) in replies.deliver {
                let ok = outcome.delivered.contains(&*uuid);
                let _ = done.send(Ok(ok));
            }
            for done in replies.requeue {
                let _ = done.send(Ok(()));
            }
            for (done, result) in replies.complete.into_iter().zip(outcome.completed) {
                let _ = done.send(result.map_err(StoreError::BatchFailed));
            }
        }
        Err(error) => {
            let message = error.to_string();
            for (_, done) in replies.deliver {
                let _ = done.send(Err(StoreError::BatchFailed(message.clone())));
            }
            for done in replies.requeue {
                let _ = done.send(Err(StoreError::BatchFailed(message.clone())));
            }
            for done in replies.complete {
                let _ = done.send(Err(StoreError::BatchFailed(message.clone())));
            }
        }
    }
}
