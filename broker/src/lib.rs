//! Ringwatch broker (SPEC S3): ingest → router → store, query, admin HTTP.

pub mod error;
pub mod store;
