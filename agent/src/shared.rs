//! The buffer as the collector and the sender share it: locked for short, never-awaiting
//! sections, with the sender's wake-up signal and the gauges it feeds.

use crate::buffer::Buffer;
use crate::metrics::AgentMetrics;

/// The buffer as shared by the collector and the sender, with the sender's wake-up signal and
/// the metrics its gauges feed.
#[derive(Debug)]
pub struct SharedBuffer {
    buffer: std::sync::Mutex<Buffer>,
    /// Signalled after every push so an idle sender wakes up.
    pub notify: tokio::sync::Notify,
    /// The agent's metrics.
    pub metrics: std::sync::Arc<AgentMetrics>,
}

impl SharedBuffer {
    /// Wraps `buffer`.
    pub fn new(buffer: Buffer, metrics: std::sync::Arc<AgentMetrics>) -> Self {
        SharedBuffer {
            buffer: std::sync::Mutex::new(buffer),
            notify: tokio::sync::Notify::new(),
            metrics,
        }
    }

    /// Runs `f` with the buffer locked, then refreshes the buffer gauges. Critical sections
    /// are short and never await.
    pub fn with<R>(&self, f: impl FnOnce(&mut Buffer) -> R) -> R {
        let mut guard = self
            .buffer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let r = f(&mut guard);
        self.metrics.set_buffer(guard.len(), guard.samples());
        r
    }
}
