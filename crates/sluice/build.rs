//! Puts the commit this binary is built from into `sluice --version`
//! (`SLUICE_COMMIT`): `git rev-parse`, or `unknown` outside a checkout (a
//! source tarball). Rebuilt when the checked-out commit changes.

use std::path::Path;
use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=SLUICE_COMMIT={commit}");
    // HEAD names a branch; a new commit moves the branch's ref, not HEAD.
    let git = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.git");
    let head = git.join("HEAD");
    println!("cargo:rerun-if-changed={}", head.display());
    if let Ok(text) = std::fs::read_to_string(&head)
        && let Some(branch) = text.trim().strip_prefix("ref: ")
    {
        println!("cargo:rerun-if-changed={}", git.join(branch).display());
        println!("cargo:rerun-if-changed={}", git.join("packed-refs").display());
    }
}
