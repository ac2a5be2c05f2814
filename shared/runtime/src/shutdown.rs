//! Shutdown: one token that every part of the process watches, triggered by SIGTERM or
//! SIGINT (or by a test). A second signal hurries it: the drain delay is cut short.

use tokio_util::sync::CancellationToken;

/// Cheap to clone; all clones see the same triggers.
#[derive(Clone, Default)]
pub struct Shutdown {
    begun: CancellationToken,
    hurried: CancellationToken,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn trigger(&self) {
        self.begun.cancel();
    }

    /// Shutdown without the drain delay: what an operator asks by signalling twice.
    pub fn hurry(&self) {
        self.begun.cancel();
        self.hurried.cancel();
    }

    pub fn is_triggered(&self) -> bool {
        self.begun.is_cancelled()
    }

    /// Completes once shutdown has begun.
    pub async fn wait(&self) {
        self.begun.cancelled().await;
    }

    /// Completes once shutdown has been hurried.
    pub async fn wait_hurried(&self) {
        self.hurried.cancelled().await;
    }

    /// Triggers shutdown on the first SIGTERM or SIGINT, and hurries it on the second.
    pub fn trigger_on_signals(&self) -> std::io::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let shutdown = self.clone();
        tokio::spawn(async move {
            for again in [false, true] {
                let name = tokio::select! {
                    _ = term.recv() => "SIGTERM",
                    _ = int.recv() => "SIGINT",
                };
                if again {
                    tracing::info!(signal = name, "shutdown requested again: no drain delay");
                    shutdown.hurry();
                } else {
                    tracing::info!(signal = name, "shutdown requested");
                    shutdown.trigger();
                }
            }
        });
        Ok(())
    }
}
