//! Puts the commit this binary is built from into `sluice --version`
//! (`SLUICE_COMMIT`): `git rev-parse`, or `unknown` outside a checkout (a
//! source tarball). Rebuilt when the checked-out commit changes.
//!
//! Renders the command line (`src/cli/`, clap and std only, included here)
//! as a man page per command and subcommand (clap_mangen) and as bash, zsh
//! and fish completions (clap_complete) into OUT_DIR, and writes
//! `OUT_DIR/manual.rs`, the table of them that the binary embeds
//! (`sluice man`, `sluice completions`): what is installed is what was built.

use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "src/cli/mod.rs"]
#[allow(dead_code)]
mod cli;

fn main() -> std::io::Result<()> {
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
    println!("cargo:rerun-if-changed=src/cli");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").ok_or_else(|| std::io::Error::other("no OUT_DIR"))?);
    // The same string as the binary's VERSION, for the pages' footers.
    let version: &'static str =
        Box::leak(format!("{} ({commit})", env!("CARGO_PKG_VERSION")).into_boxed_str());
    let cmd = cli::command(version);
    let pages = man_pages(cmd.clone(), &out.join("man"))?;
    let completions = completions(cmd, &out.join("completions"))?;
    std::fs::write(out.join("manual.rs"), manual_rs(&pages, &completions))
}

/// A man page per command into `dir` (emptied first: a removed command's
/// page must not linger); their paths, sorted.
fn man_pages(cmd: clap::Command, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    let source = format!("sluice {}", cmd.get_version().unwrap_or_default());
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    man_page(&cmd, dir, &source)?;
    let mut pages: Vec<PathBuf> =
        std::fs::read_dir(dir)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    pages.sort();
    Ok(pages)
}

/// `cmd`'s page and its subcommands', named as clap_mangen names them
/// (`sluice-user-add.1`), each footed with sluice's own version.
fn man_page(cmd: &clap::Command, dir: &Path, source: &str) -> std::io::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        man_page(sub, dir, source)?;
    }
    clap_mangen::Man::new(cmd.clone()).source(source).manual("sluice manual").generate_to(dir)?;
    Ok(())
}

/// The completions of each shell into `dir`: (shell, file name, path).
fn completions(mut cmd: clap::Command, dir: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    use clap_complete::Shell;
    std::fs::create_dir_all(dir)?;
    let mut out = Vec::new();
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let path = clap_complete::generate_to(shell, &mut cmd, "sluice", dir)?;
        out.push((shell.to_string(), path));
    }
    Ok(out)
}

/// `manual.rs`: `MAN_PAGES` (file name, roff) and `COMPLETIONS` (shell, file
/// name, script), each embedded with `include_str!`.
fn manual_rs(pages: &[PathBuf], completions: &[(String, PathBuf)]) -> String {
    let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut rs = String::from(
        "/// Every man page: (file name, roff source).\npub const MAN_PAGES: &[(&str, &str)] = &[\n",
    );
    for p in pages {
        rs.push_str(&format!("    ({:?}, include_str!({:?})),\n", name(p), p.display().to_string()));
    }
    rs.push_str("];\n\n/// Each shell's completions: (shell, file name, script).\n");
    rs.push_str("pub const COMPLETIONS: &[(&str, &str, &str)] = &[\n");
    for (shell, p) in completions {
        rs.push_str(&format!(
            "    ({shell:?}, {:?}, include_str!({:?})),\n",
            name(p),
            p.display().to_string()
        ));
    }
    rs.push_str("];\n");
    rs
}
