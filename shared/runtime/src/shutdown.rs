//! Shutdown: one token that every part of the process watches, triggered by SIGTERM or
//! SIGINT (or by a test).

use tokio_util::sync::CancellationToken;

/// Cheap to clone; all clones see the same trigger.
#[derive(Clone, Default)]
pub struct Shutdown(CancellationToken);

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn trigger(&self) {
        self.0.cancel();
    }

    pub fn is_triggered(&self) -> bool {
        self.0.is_cancelled()
    }

    /// Completes once shutdown has begun.
    pub async fn wait(&self) {
        self.0.cancelled().await;
    }

    /// Triggers shutdown on the first SIGTERM or SIGINT.
    pub fn trigger_on_signals(&self) -> std::io::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let shutdown = self.clone();
        tokio::spawn(async move {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            tracing::info!(signal = name, "shutdown requested");
            shutdown.trigger();
        });
        Ok(())
    }
}
