//! The OCI state (runtime-spec "State"), as `hako state` prints it and hooks read it on stdin.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        };
        f.write_str(s)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OciState {
    pub oci_version: String,
    pub id: String,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    pub bundle: PathBuf,
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub annotations: HashMap<String, String>,
}

impl OciState {
    /// The state hooks see while `create` runs. Its annotations are config.json's, exactly
    /// (runtime-spec "State"): hako adds none; `hako state` names the backend in a field of its
    /// own, outside the spec's.
    pub fn for_create(req: &crate::CreateRequest, pid: i32, status: Status) -> OciState {
        let annotations = req.spec.annotations().clone().unwrap_or_default();
        OciState {
            oci_version: req.spec.version().clone(),
            id: req.id.to_string(),
            status,
            pid: Some(pid),
            bundle: req.bundle.to_path_buf(),
            annotations,
        }
    }
}
