//! `imgferry generate` (hidden): what packaging and the docs derive from the clap
//! definitions, so they cannot drift from the binary: shell completions (bash, zsh, fish),
//! a man page per command, and the Markdown command reference `docs/cli.md`.
//!
//! Owns the file names those are written under and the Markdown layout of the reference;
//! the content is clap's (`clap_complete`, `clap_mangen`, the long help). It must not
//! print except through [`Output`].

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::{Command, CommandFactory, Subcommand};
use clap_complete::Shell;
use serde_json::json;

use super::{Cli, Failure, Output};
use crate::exit::ExitCode;

/// Width the reference's help text is wrapped at (fixed, so the file is the same everywhere).
const REFERENCE_WIDTH: usize = 100;

/// Arguments of `imgferry generate`.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    #[command(subcommand)]
    pub what: GenerateWhat,
}

/// What to generate.
#[derive(Debug, Subcommand)]
pub enum GenerateWhat {
    /// Shell completions: DIR/imgferry.bash, DIR/_imgferry (zsh), DIR/imgferry.fish.
    Completions {
        /// The directory to write them in (created if missing).
        dir: PathBuf,
    },
    /// A man page per command: DIR/imgferry.1, DIR/imgferry-migrate.1, ...
    Man {
        /// The directory to write them in (created if missing).
        dir: PathBuf,
    },
    /// The Markdown command reference (docs/cli.md).
    Reference {
        /// The file to write.
        file: PathBuf,
    },
}

/// Runs the command.
pub fn run(args: GenerateArgs, output: &Output) -> Result<ExitCode, Failure> {
    let written = match args.what {
        GenerateWhat::Completions { dir } => completions(&dir)?,
        GenerateWhat::Man { dir } => man_pages(&dir)?,
        GenerateWhat::Reference { file } => {
            fs_err::write(&file, reference_markdown()).map_err(Failure::new)?;
            vec![file]
        }
    };
    let human: String = written
        .iter()
        .map(|path| format!("wrote {}\n", path.display()))
        .collect();
    output.summary("generate", json!({ "written": written }), &human);
    Ok(ExitCode::Success)
}

fn completions(dir: &Path) -> Result<Vec<PathBuf>, Failure> {
    fs_err::create_dir_all(dir).map_err(Failure::new)?;
    // The root rebuilt without hidden subcommands: clap_complete would offer them.
    let full = Cli::command();
    let mut cli = Command::new("imgferry")
        .about(full.get_about().cloned().unwrap_or_default())
        .version(env!("CARGO_PKG_VERSION"))
        .args(full.get_arguments().cloned())
        .subcommands(full.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    [Shell::Bash, Shell::Zsh, Shell::Fish]
        .into_iter()
        .map(|shell| {
            clap_complete::generate_to(shell, &mut cli, "imgferry", dir).map_err(|e| {
                Failure::new(format!(
                    "cannot write {shell} completions in {}: {e}",
                    dir.display()
                ))
            })
        })
        .collect()
}

fn man_pages(dir: &Path) -> Result<Vec<PathBuf>, Failure> {
    fs_err::create_dir_all(dir).map_err(Failure::new)?;
    let mut written = Vec::new();
    for command in visible_commands() {
        let man = clap_mangen::Man::new(command);
        let path = dir.join(man.get_filename());
        let mut page = Vec::new();
        man.render(&mut page).map_err(Failure::new)?;
        fs_err::write(&path, page).map_err(Failure::new)?;
        written.push(path);
    }
    Ok(written)
}

/// The root command and every visible subcommand, depth first, built (so subcommands carry
/// their display names, `imgferry-images-list`, and the global flags).
fn visible_commands() -> Vec<Command> {
    fn walk(command: &Command, into: &mut Vec<Command>) {
        into.push(command.clone());
        for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
            walk(sub, into);
        }
    }
    let mut root = Cli::command().disable_help_subcommand(true);
    root.build();
    let mut all = Vec::new();
    walk(&root, &mut all);
    all
}

/// The command reference: each command's long help, the global options once.
pub fn reference_markdown() -> String {
    let mut text = String::from(
        "# imgferry command reference\n\n\
         Generated from the clap definitions: do not edit. After changing a flag or its help,\n\
         refresh it with `cargo run -q -- generate reference docs/cli.md` (a test fails while\n\
         it is stale). The same text is `imgferry COMMAND --help`; `man imgferry-COMMAND`\n\
         once installed (`scripts/install`).\n",
    );
    for command in visible_commands() {
        let name = command
            .get_display_name()
            .unwrap_or(command.get_name())
            .replace('-', " ");
        let is_root = !name.contains(' ');
        // Global flags are listed once, under the root command.
        let mut command = command.term_width(REFERENCE_WIDTH);
        if !is_root {
            command = command.mut_args(|arg| {
                if arg.is_global_set() {
                    arg.hide(true)
                } else {
                    arg
                }
            });
        }
        let help = command.render_long_help().to_string();
        let _ = write!(text, "\n## {name}\n\n```text\n");
        for line in help.trim_end().lines() {
            let _ = writeln!(text, "{}", line.trim_end());
        }
        text.push_str("```\n");
    }
    text
}
