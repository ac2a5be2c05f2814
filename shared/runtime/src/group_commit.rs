//! Group commit: many small writes from concurrent requests share one transaction.
//!
//! A device endpoint that must record something before it answers (a command's status,
//! a new enrollment) hands its write to a [`GroupCommit`] and awaits it. A single task
//! collects the writes that arrive while the previous transaction runs (up to
//! `max_batch`) and commits them together, each in its own savepoint, so that one failing
//! write does not undo the others. Each caller learns its own write's result only after
//! the commit: nothing is answered that is not durable.
//!
//! With one writer (SQLite) or many (PostgreSQL), a transaction's fixed cost (the commit,
//! the fsync) is paid once per batch instead of once per request.

use diesel::Connection as _;
use futures_util::future::BoxFuture;
use mdm_store::{DbConnection, Store, StoreError};
use tokio::sync::{mpsc, oneshot};

type Work = Box<dyn FnOnce(&mut DbConnection) -> Result<(), StoreError> + Send>;

struct Job {
    work: Work,
    done: oneshot::Sender<Result<(), StoreError>>,
}

/// A handle to submit writes; cheap to clone.
#[derive(Clone)]
pub struct GroupCommit {
    sender: mpsc::Sender<Job>,
}

impl GroupCommit {
    /// Starts the committing task on the current runtime. `max_batch` bounds the writes in
    /// one transaction; `queue` bounds the writes waiting (callers wait when it is full).
    pub fn start(store: Store, max_batch: usize, queue: usize) -> Self {
        let (sender, receiver) = mpsc::channel(queue.max(1));
        tokio::spawn(run(store, receiver, max_batch.max(1)));
        Self { sender }
    }

    /// Runs `write` in the next batch; answers its result after the batch commits.
    pub async fn write<T, F>(&self, write: F) -> Result<T, StoreError>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let (result_tx, result_rx) = oneshot::channel();
        let work: Work = Box::new(move |conn| {
            let value = write(conn)?;
            let _ = result_tx.send(value);
            Ok(())
        });
        let (done_tx, done_rx) = oneshot::channel();
        self.sender
            .send(Job {
                work,
                done: done_tx,
            })
            .await
            .map_err(|_| StoreError::Unavailable("the group-commit writer has stopped".into()))?;
        done_rx
            .await
            .map_err(|_| StoreError::Unavailable("the group-commit writer has stopped".into()))??;
        result_rx
            .await
            .map_err(|_| StoreError::Panicked("a batched write lost its result".into()))
    }
}

async fn run(store: Store, mut receiver: mpsc::Receiver<Job>, max_batch: usize) {
    while let Some(first) = receiver.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < max_batch {
            match receiver.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        commit(&store, jobs).await;
    }
}

/// Commits one batch: each job in a savepoint, all in one transaction. A job's own
/// failure is answered to it alone; a failed commit is answered to all.
async fn commit(store: &Store, jobs: Vec<Job>) {
    let (works, dones): (Vec<Work>, Vec<_>) = jobs.into_iter().map(|j| (j.work, j.done)).unzip();
    let outcome: Result<Vec<Result<(), StoreError>>, StoreError> = store
        .write(move |conn| {
            let mut results = Vec::with_capacity(works.len());
            for work in works {
                results.push(conn.transaction(|c| work(c)));
            }
            Ok(results)
        })
        .await;
    match outcome {
        Ok(results) => {
            for (done, result) in dones.into_iter().zip(results) {
                let _ = done.send(result);
            }
        }
        Err(error) => {
            tracing::warn!(%error, "a group commit failed");
            let message = error.to_string();
            for done in dones {
                let _ = done.send(Err(StoreError::BatchFailed(message.clone())));
            }
        }
    }
}

/// A future that resolves once `group` has committed everything submitted before it.
pub fn flush(group: &GroupCommit) -> BoxFuture<'static, Result<(), StoreError>> {
    let group = group.clone();
    Box::pin(async move { group.write(|_| Ok(())).await })
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::prelude::*;
    use mdm_store::schema::rt_leases;
    use mdm_store::testing::{TestBackend, TestDatabase};

    async fn count(store: &Store) -> i64 {
        store
            .read(|c| {
                rt_leases::table
                    .count()
                    .get_result(c)
                    .map_err(StoreError::from)
            })
            .await
            .unwrap()
    }

    fn insert(name: String) -> impl FnOnce(&mut DbConnection) -> Result<String, StoreError> {
        move |c| {
            diesel::insert_into(rt_leases::table)
                .values((
                    rt_leases::name.eq(&name),
                    rt_leases::holder.eq("t"),
                    rt_leases::expires_at.eq(0),
                ))
                .execute(c)?;
            Ok(name)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_commit_and_failures_stay_their_own() {
        let db = TestDatabase::new(TestBackend::Sqlite).await.unwrap();
        let group = GroupCommit::start(db.store().clone(), 64, 1024);
        let writers: Vec<_> = (0..200)
            .map(|i| {
                let group = group.clone();
                tokio::spawn(async move { group.write(insert(format!("lease-{i}"))).await })
            })
            .collect();
        // A duplicate key fails alone.
        let duplicate = group.write(insert("lease-0".into()));
        let mut ok = 0;
        for writer in writers {
            if writer.await.unwrap().is_ok() {
                ok += 1;
            }
        }
        let duplicate = duplicate.await;
        assert_eq!(
            ok + usize::from(duplicate.is_ok()),
            200,
            "exactly one of the two lease-0 writes fails"
        );
        flush(&group).await.unwrap();
        assert_eq!(count(db.store()).await, 200);
    }
}
