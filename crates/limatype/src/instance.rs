//! What `limactl list` knows of an instance.

use serde::{Deserialize, Serialize};

use crate::{Disk, LimaYaml, Network};

/// Instance status, spelled as Lima spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Status {
    #[default]
    #[serde(rename = "")]
    Unknown,
    Uninitialized,
    Installing,
    Broken,
    Stopped,
    Running,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Status::Unknown => "Unknown",
            Status::Uninitialized => "Uninitialized",
            Status::Installing => "Installing",
            Status::Broken => "Broken",
            Status::Stopped => "Stopped",
            Status::Running => "Running",
        };
        f.write_str(s)
    }
}

// `default`: fields skipped when zero/empty must read back as zero/empty.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Instance {
    pub name: String,
    pub hostname: String,
    pub status: Status,
    pub dir: String,
    pub vm_type: String,
    pub arch: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub cpus: i64,
    /// Bytes.
    #[serde(skip_serializing_if = "is_zero")]
    pub memory: i64,
    /// Bytes.
    #[serde(skip_serializing_if = "is_zero")]
    pub disk: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional_disks: Vec<Disk>,
    #[serde(default, rename = "network", skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<Network>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ssh_local_port: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ssh_config_file: String,
    #[serde(default, rename = "hostAgentPID", skip_serializing_if = "is_zero")]
    pub host_agent_pid: i64,
    #[serde(default, rename = "driverPID", skip_serializing_if = "is_zero")]
    pub driver_pid: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<LimaYaml>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ssh_address: String,
    #[serde(default)]
    pub protected: bool,
    #[serde(default)]
    pub lima_version: String,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}
