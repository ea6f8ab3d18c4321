//! A broker's id in the cluster: the name membership, the ring and the peer pools know it by.

use std::fmt;
use std::sync::Arc;

/// A broker's id (cheap to clone: the ring's members are ids of the same kind, `Arc<str>`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(Arc<str>);

impl NodeId {
    pub fn new(id: impl Into<Arc<str>>) -> NodeId {
        NodeId(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for NodeId {
    fn from(id: &str) -> NodeId {
        NodeId::new(id)
    }
}

impl From<String> for NodeId {
    fn from(id: String) -> NodeId {
        NodeId::new(id)
    }
}
