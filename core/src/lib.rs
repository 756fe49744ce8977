//! pg_deploy's PostgreSQL-free core: the manifest model and its validation,
//! checksums, apply options and planning decisions. The extension and the
//! command-line client share it; `cargo test -p pg_deploy_core` runs its tests.

pub mod analysis;
pub mod argument;
pub mod capacity;
pub mod checksum;
pub mod deployment_digest;
pub mod document;
pub mod downstream;
pub mod error;
pub mod hazards;
pub mod json;
pub mod jsonb_text;
pub mod lineage_digest;
pub mod locks;
pub mod manifest;
pub mod manifest_document;
pub mod options;
pub mod outside;
pub mod phases;
pub mod plan;
pub mod position;
pub mod report;
pub mod retry;
pub mod revert;

pub use error::{ManifestError, PlanError, SqlState};
pub use manifest::{Change, ChangeKind, Manifest, Settings};
pub use options::{
    ApplyOptions, BaselineOptions, BaselineSelection, DriftPolicy, PhasePlacement, PlanOptions, RevertOptions,
};
pub use plan::{Action, AppliedChange, History, Plan};

/// The pg_deploy release this core belongs to.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
