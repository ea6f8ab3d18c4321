//! Ringwatch viz: the dashboard, HTTP API and live push (SPEC S5).
//!
//! Not built yet: this crate is a placeholder in the workspace so the layout is final; the
//! `ringwatch` binary offers no `viz` command until it is (issue 4).
