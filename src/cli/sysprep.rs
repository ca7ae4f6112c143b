//! `imgferry sysprep FILE`: strip host identity from a guest image, with virt-sysprep's
//! selection words. Argument handling and output only; the work is
//! `pipeline::backend::run_on_image` (the native backend, or libguestfs), committed only
//! when every change succeeded.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::PathBuf;

use serde_json::json;

use super::{Failure, Output};
use crate::exit::ExitCode;
use crate::pipeline::backend::{run_on_image, BackendChoice, BackendRun};
use crate::sysprep::{
    self, Hostname, MachineIdMode, Options, Scrub, UserAccounts, Words, OPERATIONS,
};

/// Arguments of `imgferry sysprep`.
#[derive(Debug, clap::Args)]
pub struct SysprepArgs {
    /// The image (raw or qcow2). Changed in place, and only if every change succeeds.
    #[arg(required_unless_present = "list_operations")]
    pub file: Option<PathBuf>,
    /// Operations, virt-sysprep style: names, `defaults`, `all`, `-name` to take one
    /// away (comma-separated, repeatable). Without this and --enable: the defaults.
    #[arg(long, value_name = "OPS")]
    pub operations: Vec<String>,
    /// Run exactly these operations (comma-separated, repeatable).
    #[arg(long, value_name = "OPS")]
    pub enable: Vec<String>,
    /// Remove what this guest glob matches (directories with their content). Always
    /// applied, whatever --enable/--operations select.
    #[arg(long, value_name = "GLOB")]
    pub delete: Vec<String>,
    /// Truncate this guest file to zero bytes. Always applied.
    #[arg(long, value_name = "PATH")]
    pub truncate: Vec<String>,
    /// Set the hostname (/etc/hostname and the distro's other places). Always applied.
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// Write CONTENT (as given, no newline added) to guest file FILE, creating or
    /// replacing it, as virt-customize does (repeatable, applied last, in order).
    #[arg(long, value_name = "FILE:CONTENT")]
    pub write: Vec<String>,
    /// user-account: remove only these users (comma-separated, repeatable).
    #[arg(long, value_name = "USERS")]
    pub remove_user_accounts: Vec<String>,
    /// user-account: keep these users (comma-separated, repeatable; wins over
    /// --remove-user-accounts).
    #[arg(long, value_name = "USERS")]
    pub keep_user_accounts: Vec<String>,
    /// What machine-id does with /etc/machine-id.
    #[arg(long, value_enum, default_value = "uninitialized")]
    pub machine_id: MachineIdArg,
    /// Print the exact plan and change nothing (the image stays byte-identical).
    #[arg(long)]
    pub dry_run: bool,
    /// Leave the old content of removed, truncated or replaced files in the freed
    /// blocks (faster; anyone holding the image can read it). By default it is
    /// overwritten with zeros, and natively the ext4 journal's log too.
    #[arg(long)]
    pub no_scrub: bool,
    /// Guest backend: native (no appliance, ext2/3/4 guests), libguestfs, or auto
    /// (native when it handles the guest, libguestfs otherwise).
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendArg,
    /// List the operations (name, default on `*`, description) and exit.
    #[arg(long)]
    pub list_operations: bool,
}

/// `--backend` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendArg {
    Auto,
    Native,
    Libguestfs,
}

impl BackendArg {
    /// The pipeline's name for the choice.
    pub fn choice(self) -> BackendChoice {
        match self {
            Self::Auto => BackendChoice::Auto,
            Self::Native => BackendChoice::Native,
            Self::Libguestfs => BackendChoice::Libguestfs,
        }
    }
}

/// `--machine-id` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MachineIdArg {
    Uninitialized,
    Empty,
    Remove,
}

/// Runs the command.
pub fn run(args: SysprepArgs, output: &Output) -> Result<ExitCode, Failure> {
    if args.list_operations {
        list_operations(output);
        return Ok(ExitCode::Success);
    }
    let options = options(&args)?;
    let Some(file) = args.file else {
        return Err(Failure::new("an image file is required").with_code(ExitCode::Usage));
    };
    execute(&file, &options, args.backend.choice(), output)
}

fn options(args: &SysprepArgs) -> Result<Options, Failure> {
    let mut words: Vec<Words> = args.enable.iter().cloned().map(Words::Enable).collect();
    words.extend(args.operations.iter().cloned().map(Words::Operations));
    let operations = sysprep::select(&words)?;
    let hostname = args.hostname.as_deref().map(Hostname::parse).transpose()?;
    let user_accounts = user_accounts(
        &args.remove_user_accounts,
        &args.keep_user_accounts,
        &operations,
    )?;
    Ok(Options {
        operations,
        machine_id: match args.machine_id {
            MachineIdArg::Uninitialized => MachineIdMode::Uninitialized,
            MachineIdArg::Empty => MachineIdMode::Empty,
            MachineIdArg::Remove => MachineIdMode::Remove,
        },
        delete: args.delete.clone(),
        truncate: args.truncate.clone(),
        hostname,
        write: writes(&args.write)?,
        user_accounts,
        dry_run: args.dry_run,
        scrub: if args.no_scrub {
            Scrub::Keep
        } else {
            Scrub::Zero
        },
    })
}

/// The `--remove-user-accounts`/`--keep-user-accounts` choice (shared with `migrate`);
/// given without the user-account operation selected, a usage error.
pub(super) fn user_accounts(
    remove: &[String],
    keep: &[String],
    operations: &[&'static sysprep::Operation],
) -> Result<UserAccounts, Failure> {
    let user_accounts = UserAccounts {
        remove: user_names(remove, "--remove-user-accounts")?,
        keep: user_names(keep, "--keep-user-accounts")?,
    };
    let user_account_on = operations.iter().any(|op| op.name == "user-account");
    if user_accounts != UserAccounts::default() && !user_account_on {
        return Err(Failure::new(
            "--remove-user-accounts/--keep-user-accounts were given, but the user-account operation is not selected",
        )
        .with_hint("add --enable user-account (or --operations defaults,user-account)")
        .with_code(ExitCode::Usage));
    }
    Ok(user_accounts)
}

/// The `--write FILE:CONTENT` values (shared with `migrate`).
pub(super) fn writes(values: &[String]) -> Result<Vec<(String, String)>, Failure> {
    Ok(values
        .iter()
        .map(|v| sysprep::custom::parse_write(v))
        .collect::<Result<_, _>>()?)
}

/// The user names of a repeatable comma-separated flag; an empty name is an error.
fn user_names(values: &[String], flag: &str) -> Result<BTreeSet<String>, Failure> {
    let mut names = BTreeSet::new();
    for name in values.iter().flat_map(|v| v.split(',')) {
        if name.trim().is_empty() {
            return Err(Failure::new(format!("{flag}: empty user name")).with_code(ExitCode::Usage));
        }
        names.insert(name.trim().to_owned());
    }
    Ok(names)
}

fn execute(
    file: &std::path::Path,
    options: &Options,
    backend: BackendChoice,
    output: &Output,
) -> Result<ExitCode, Failure> {
    let start = std::time::Instant::now();
    let run = run_on_image(file, options, backend, &output.reporter())?;
    let timings = &run.timings;
    let value = json!({
        "image": file,
        "dry_run": options.dry_run,
        "committed": run.committed,
        "changes": run.changes(),
        "backend": run.backend,
        "backend_reason": run.reason,
        "accelerator": run.accelerator,
        "launch_seconds": timings.launch_seconds,
        "inspect_seconds": timings.inspect_seconds,
        "sysprep_seconds": timings.sysprep_seconds,
        "commit_seconds": timings.commit_seconds,
        "scrubbed_bytes": run.scrubbed_bytes,
        "scrubbed_journal_bytes": run.scrubbed_journal_bytes,
        "total_seconds": start.elapsed().as_secs_f64(),
        "roots": run.reports.iter().map(|r| json!({
            "root": r.os.root,
            "distro": r.os.distro,
            "family": r.os.family,
            "version": format!("{}.{}", r.os.major_version, r.os.minor_version),
            "product_name": r.os.product_name,
            "changes": r.changes.len(),
        })).collect::<Vec<_>>(),
    });
    // A dry run exists to show the plan; a real run's change list is an account.
    if options.dry_run {
        output.result("sysprep", value, &human(&run, true));
    } else {
        output.summary("sysprep", value, &human(&run, false));
    }
    Ok(ExitCode::Success)
}

fn human(run: &BackendRun, dry_run: bool) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "backend: {} ({})", run.backend, run.reason);
    let mut total = 0;
    for report in &run.reports {
        let os = &report.os;
        let _ = writeln!(
            text,
            "{} ({} {}.{}, {})",
            os.root, os.distro, os.major_version, os.minor_version, os.product_name
        );
        for change in &report.changes {
            let _ = writeln!(
                text,
                "  {:<8} {}  [{}]",
                change.action.name(),
                change.path,
                change.operation
            );
            for line in &change.removed_lines {
                let _ = writeln!(text, "           - {line}");
            }
            for line in &change.added_lines {
                let _ = writeln!(text, "           + {line}");
            }
        }
        total += report.changes.len();
    }
    let _ = if dry_run {
        writeln!(
            text,
            "dry run: {total} changes planned, the image was not changed"
        )
    } else if run.committed {
        writeln!(text, "{total} changes made")
    } else {
        writeln!(text, "nothing to change, the image was not changed")
    };
    text
}

fn list_operations(output: &Output) {
    let mut text = String::new();
    let width = OPERATIONS.iter().map(|op| op.name.len()).max().unwrap_or(0);
    for op in OPERATIONS {
        let mark = if op.default_on { '*' } else { ' ' };
        let _ = writeln!(text, "{:<width$} {mark} {}", op.name, op.description);
    }
    let value = json!({
        "operations": OPERATIONS.iter().map(|op| json!({
            "name": op.name,
            "default": op.default_on,
            "description": op.description,
            "paths": op.paths,
        })).collect::<Vec<_>>(),
    });
    output.result("sysprep", value, &text);
}
