//! What agent, broker and viz share instead of each writing it again: the consistent-hash ring
//! (`ring`) and the cluster view it is made from (`cluster`), the clock (`clock`), the rule that calls a host live, stale or gone
//! (`liveness`), and a broker's id (`node`). Pure code: no I/O, no async.

pub mod clock;
pub mod cluster;
pub mod config;
pub mod liveness;
pub mod node;
pub mod ring;

pub use clock::{Clock, ManualClock, SystemClock, now_ms};
pub use cluster::{Change, ClusterError, ClusterView, Member, MemberState};
pub use config::{Secret, read_secret_file};
pub use liveness::{Liveness, LivenessRule};
pub use node::NodeId;
pub use ring::Ring;
