//! One row of the conformance results: written by `tests/conformance.rs`, rendered into
//! docs/real-sdk.md by `examples/conformance_table.rs`.

use serde::{Deserialize, Serialize};

/// What one creation did, as the README table shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Row {
    /// The case's name.
    pub(crate) case: String,
    /// What the case is, in words.
    pub(crate) what: String,
    /// `ACS` or `Teams`.
    pub(crate) agent: String,
    /// What the SDK did.
    pub(crate) sdk: String,
    /// The error's categories, as the SDK spelled them.
    pub(crate) category: String,
    /// How long the SDK took.
    pub(crate) took_ms: u64,
    /// What the crate's preflight predicts (`-` where it does not apply).
    pub(crate) preflight: String,
    /// Whether the prediction is the SDK's answer.
    pub(crate) agrees: bool,
    /// The reason for a deliberate difference.
    pub(crate) note: String,
}
