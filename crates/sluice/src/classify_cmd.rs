//! `sluice classify`: placeholder until the decide crate lands.

use std::path::PathBuf;

/// Runs `sluice classify`; returns the process exit code.
pub fn run(_format: Option<String>, _eval: Option<PathBuf>, _files: Vec<String>) -> anyhow::Result<i32> {
    anyhow::bail!("classify is not implemented yet")
}
