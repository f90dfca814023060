//! `sluice man` and `sluice completions`: the man pages and the bash, zsh
//! and fish completions that `build.rs` rendered from `cli/` at build time,
//! embedded in the binary, printed or written into a directory (what
//! `packaging/install.sh` installs). Built from the same types that parse
//! the command line, so they cannot drift from it.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

use crate::cli::Shell;

include!(concat!(env!("OUT_DIR"), "/manual.rs"));

/// `sluice completions SHELL [--dir D]`.
pub fn completions(shell: Shell, dir: Option<&Path>) -> anyhow::Result<i32> {
    let want = match shell {
        Shell::Bash => "bash",
        Shell::Zsh => "zsh",
        Shell::Fish => "fish",
    };
    let (_, file, script) = COMPLETIONS
        .iter()
        .find(|(s, _, _)| *s == want)
        .with_context(|| format!("no {want} completions built"))?;
    match dir {
        Some(dir) => {
            let path = write(dir, file, script)?;
            eprintln!("wrote {}", path.display());
        }
        None => std::io::stdout().lock().write_all(script.as_bytes())?,
    }
    Ok(0)
}

/// `sluice man [COMMAND...]` prints one page; `sluice man --dir D` writes them all.
pub fn man(command: &[String], dir: Option<&Path>) -> anyhow::Result<i32> {
    if let Some(dir) = dir {
        for (file, roff) in MAN_PAGES {
            write(dir, file, roff)?;
        }
        eprintln!("wrote {} man pages into {}", MAN_PAGES.len(), dir.display());
        return Ok(0);
    }
    let file = page_file(command);
    match MAN_PAGES.iter().find(|(f, _)| *f == file) {
        Some((_, roff)) => {
            std::io::stdout().lock().write_all(roff.as_bytes())?;
            Ok(0)
        }
        None => {
            let names: Vec<&str> = MAN_PAGES.iter().map(|(f, _)| f.trim_end_matches(".1")).collect();
            eprintln!("no man page {file}; there are: {}", names.join(" "));
            Ok(1)
        }
    }
}

/// The page of `sluice user add` is `sluice-user-add.1` (clap_mangen's names).
fn page_file(command: &[String]) -> String {
    let mut name = String::from("sluice");
    for word in command.iter().flat_map(|c| c.split_whitespace()) {
        if word != "sluice" || name != "sluice" {
            name.push('-');
            name.push_str(word);
        }
    }
    format!("{name}.1")
}

fn write(dir: &Path, file: &str, text: &str) -> anyhow::Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(file);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Roff's escapes undone, whitespace collapsed: the text a reader sees.
    fn plain(roff: &str) -> String {
        let text = roff.replace(r"\*(Aq", "'").replace(r"\-", "-").replace(r"\&", "").replace(r"\\", r"\");
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    /// Every command and subcommand with its words (`["user", "add"]`).
    fn walk(cmd: &clap::Command, path: Vec<String>, out: &mut Vec<(Vec<String>, clap::Command)>) {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
            let mut words = path.clone();
            words.push(sub.get_name().to_string());
            walk(sub, words.clone(), out);
            out.push((words, sub.clone()));
        }
    }

    #[test]
    fn every_command_has_a_man_page_with_its_help() {
        let mut cmd = crate::cli::command("0.0.0 (test)");
        cmd.build();
        let mut all = vec![(Vec::new(), cmd.clone())];
        walk(&cmd, Vec::new(), &mut all);
        assert!(all.len() > 40, "found only {} commands", all.len());
        for (words, sub) in &all {
            let file = page_file(words);
            let page = MAN_PAGES.iter().find(|(f, _)| *f == file).map(|(_, r)| plain(r));
            let page = page.unwrap_or_else(|| panic!("no man page {file} for `sluice {}`", words.join(" ")));
            let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
            assert!(!about.trim().is_empty(), "`sluice {}` has no help text", words.join(" "));
            let about = about.split_whitespace().collect::<Vec<_>>().join(" ");
            assert!(page.contains(&about), "{file} lacks {about:?}");
            for arg in sub.get_arguments().filter(|a| !a.is_hide_set() && a.get_long().is_some()) {
                let flag = format!("--{}", arg.get_long().unwrap_or_default());
                assert!(page.contains(&flag), "{file} lacks {flag}");
            }
        }
        assert_eq!(MAN_PAGES.len(), all.len(), "a man page for no command");
    }

    #[test]
    fn page_names_follow_the_command() {
        assert_eq!(page_file(&[]), "sluice.1");
        assert_eq!(page_file(&["serve".into()]), "sluice-serve.1");
        assert_eq!(page_file(&["user add".into()]), "sluice-user-add.1");
        assert_eq!(page_file(&["sluice".into(), "user".into(), "add".into()]), "sluice-user-add.1");
    }

    #[test]
    fn each_shell_has_its_completions() {
        for (shell, file, script) in COMPLETIONS {
            assert!(script.contains("sluice"), "{shell}");
            assert!(
                script.contains("serve") && script.contains("apikey"),
                "{shell} completions lack commands"
            );
            assert!(!file.is_empty());
        }
        assert_eq!(COMPLETIONS.len(), 3);
    }
}
