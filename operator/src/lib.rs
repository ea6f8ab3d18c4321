//! Ringwatch operator: reconciles a `MonitorCluster` into workloads (SPEC S6).
//!
//! Not built yet: this crate is a placeholder in the workspace so the layout is final; the
//! `ringwatch` binary offers no `operator` command until it is.
