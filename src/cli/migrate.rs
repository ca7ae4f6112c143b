//! `imgferry migrate` and `imgferry template`: argument handling, the two ends, and the
//! summary; the stages are `pipeline::run`'s (a dry run is `pipeline::plan`).
//!
//! `template` is `migrate` whose default sysprep is every default-on operation;
//! `migrate`'s default is the light set that moving a VM needs (the NIC bindings and
//! the Kerberos host keytab go, the rest of the machine's identity stays).

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::cloud_args::CloudArgs;
use super::migrate_text::{plan_text, summary_text};
use super::sysprep::{BackendArg, MachineIdArg};
use super::{Failure, Output};
use crate::cloud::config::{CloudCatalog, ConfigEnv};
use crate::cloud::glance::Glance;
use crate::cloud::keystone::{Session, SessionOptions};
use crate::disk::qcow2::writer::Compat;
use crate::exit::ExitCode;
use crate::pipeline::glance::GlanceSource;
use crate::pipeline::glance_target::GlanceTarget;
use crate::pipeline::local::{FileSource, FileTarget};
use crate::pipeline::properties::VERIFIED_PROPERTY;
use crate::pipeline::stream::{self, ModeChoice, Outcome};
use crate::pipeline::volumes::{self, TargetShape};
use crate::pipeline::{
    self, DiskFormat, OutputChoice, PropertyEdits, Request, Source, Stage, Target,
};
use crate::report::Reporter;
use crate::sysprep::{self, Hostname, MachineIdMode, Scrub, Words, OPERATIONS};

/// What `migrate` runs when no selection is given: what moving a VM needs.
pub const MIGRATE_OPERATIONS: &str = "udev-persistent-net,net-hwaddr,kerberos-hostkeytab";

/// Which command this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    Migrate,
    Template,
}

/// Arguments of `imgferry migrate` and `imgferry template`.
#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// The source image: a name or id in the --from cloud.
    #[arg(required_unless_present = "from_file", conflicts_with = "from_file")]
    pub source: Option<String>,
    /// The cloud the source image is in (name in clouds.yaml; default --os-cloud or
    /// OS_CLOUD). The source project is --os-project-name/--os-project-id, else the cloud's.
    #[arg(long, value_name = "CLOUD")]
    pub from: Option<String>,
    /// The source project from the global cloud options (not a flag of its own).
    #[arg(skip)]
    pub from_project: Option<String>,
    /// Take the source from a local image file instead of a cloud.
    #[arg(long, value_name = "FILE")]
    pub from_file: Option<PathBuf>,
    /// The cloud to create the image in.
    #[arg(long, value_name = "CLOUD", required_unless_present = "to_file")]
    pub to: Option<String>,
    /// Write the result to a local image file instead of a cloud.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["to", "project"])]
    pub to_file: Option<PathBuf>,
    /// The project (name or id) to create the image in (default: the --to cloud's).
    #[arg(long, value_name = "NAME_OR_ID")]
    pub project: Option<String>,
    /// The target image's name (default: the source's).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Set the guest's hostname (/etc/hostname and the distro's other places).
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// Sysprep operations, as in `imgferry sysprep --operations`.
    #[arg(long, value_name = "OPS")]
    pub operations: Vec<String>,
    /// Run exactly these sysprep operations, as in `imgferry sysprep --enable`.
    #[arg(long, value_name = "OPS")]
    pub enable: Vec<String>,
    /// Remove what this guest glob matches (always applied unless --no-sysprep).
    #[arg(long, value_name = "GLOB")]
    pub delete: Vec<String>,
    /// Truncate this guest file (always applied unless --no-sysprep).
    #[arg(long, value_name = "PATH")]
    pub truncate: Vec<String>,
    /// user-account: remove only these users (comma-separated, repeatable).
    #[arg(long, value_name = "USERS")]
    pub remove_user_accounts: Vec<String>,
    /// user-account: keep these users (comma-separated, repeatable; wins over
    /// --remove-user-accounts).
    #[arg(long, value_name = "USERS")]
    pub keep_user_accounts: Vec<String>,
    /// What the machine-id operation does with /etc/machine-id.
    #[arg(long, value_enum, default_value = "uninitialized")]
    pub machine_id: MachineIdArg,
    /// Guest backend for the sysprep stage, as in `imgferry sysprep --backend`.
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendArg,
    /// Do not touch the guest at all.
    #[arg(long, conflicts_with_all = ["operations", "enable", "delete", "truncate", "hostname",
        "remove_user_accounts", "keep_user_accounts", "no_scrub", "write"])]
    pub no_sysprep: bool,
    /// Write CONTENT to guest file FILE, as `imgferry sysprep --write` (repeatable).
    #[arg(long, value_name = "FILE:CONTENT")]
    pub write: Vec<String>,
    /// Leave the old content of files sysprep removes, truncates or replaces in the
    /// freed blocks, as `imgferry sysprep --no-scrub`.
    #[arg(long)]
    pub no_scrub: bool,
    /// qcow2 compat of the result: 0.10 (v2, for old guests) or 1.1 (v3).
    #[arg(long, value_name = "0.10|1.1", value_parser = parse_compat)]
    pub compat: Option<Compat>,
    /// Disk format of the result (default: the source's).
    #[arg(long, value_enum)]
    pub disk_format: Option<DiskFormatArg>,
    /// Add or override a property on the target image (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    pub property: Vec<String>,
    /// Leave this property off the target image (repeatable; a trailing * drops a prefix).
    #[arg(long, value_name = "KEY")]
    pub drop_property: Vec<String>,
    /// The target image's visibility (default: private).
    #[arg(long, value_enum)]
    pub visibility: Option<VisibilityArg>,
    /// Where the state and intermediate images go (default: a directory per request
    /// under $XDG_CACHE_HOME/imgferry/work).
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Keep the work dir after success.
    #[arg(long)]
    pub keep_work_dir: bool,
    /// Forget an earlier interrupted run of this request and start over.
    #[arg(long)]
    pub restart: bool,
    /// Refuse a source image without os_hash_value (default: warn and continue).
    #[arg(long)]
    pub require_hash: bool,
    /// Print the plan (final property set, sysprep plan) and change nothing anywhere.
    #[arg(long)]
    pub dry_run: bool,
    /// What a volume-backed snapshot becomes at the target: `image` (one image per disk)
    /// or `volumes` (volumes, their snapshots, and an image record that boots from them,
    /// as Nova made the source).
    #[arg(long, value_enum, default_value = "image")]
    pub target_as: TargetAsArg,
    /// With --target-as volumes: keep the images the target volumes were made from.
    #[arg(long)]
    pub keep_images: bool,
    /// Run the staged pipeline (download into the work dir, sysprep, convert, upload)
    /// even when the one-pass stream could run.
    #[arg(long)]
    pub staged: bool,
    /// TEST HOOK: fail right after this stage is recorded.
    #[arg(long, hide = true, value_name = "STAGE", value_parser = parse_stage)]
    pub test_stop_after: Option<Stage>,
}

/// `--disk-format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DiskFormatArg {
    Raw,
    Qcow2,
}

/// `--target-as` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TargetAsArg {
    Image,
    Volumes,
}

impl TargetAsArg {
    pub(super) fn shape(self) -> TargetShape {
        match self {
            Self::Image => TargetShape::Image,
            Self::Volumes => TargetShape::Volumes,
        }
    }
}

/// `--visibility` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum VisibilityArg {
    Private,
    Shared,
    Community,
    Public,
}

fn parse_compat(text: &str) -> Result<Compat, String> {
    Compat::parse(text).ok_or_else(|| format!("unknown compat {text:?} (expected 0.10 or 1.1)"))
}

fn parse_stage(text: &str) -> Result<Stage, String> {
    Stage::parse(text).ok_or_else(|| format!("unknown stage {text:?}"))
}

/// Runs `migrate` or `template`.
pub fn run(
    mut args: MigrateArgs,
    flavour: Flavour,
    cloud: &CloudArgs,
    output: &Output,
) -> Result<ExitCode, Failure> {
    if args.from_file.is_none() {
        args.from = args.from.take().or_else(|| cloud.os_cloud.clone());
        args.from_project = cloud.project();
    }
    let request = request(&args, flavour)?;
    let reporter = output.reporter();
    if args.from_file.is_none() {
        let session = connect_session(
            args.from.as_deref(),
            args.from_project.as_deref(),
            &reporter,
        )?;
        let mut glance = Glance::connect(session.clone())?;
        let wanted = args.source.as_deref().unwrap_or_default();
        let image = glance.resolve(wanted)?;
        if volumes::is_volume_backed(&image) {
            return super::migrate_volumes::run(
                &args, flavour, &request, image, session, glance, output,
            );
        }
    }
    let mut source = source(&args, &reporter)?;
    if let (Some(from), Some(to)) = (&args.from, &args.to) {
        if from == to && args.project.is_some() {
            reporter.warn(
                "same cloud, another project: if that project only needs to use the image, \
                 `imgferry share` gives it access without a copy",
            );
        }
    }
    if args.dry_run {
        let mut plan = pipeline::plan(&request, source.as_mut(), &reporter)?;
        plan.mode = Some(match stream_refusal(&args) {
            Some(choice) => choice,
            None => {
                let glance = connect(
                    args.from.as_deref(),
                    args.from_project.as_deref(),
                    &reporter,
                )?;
                let wanted = args.source.as_deref().unwrap_or_default();
                stream::dry_run_mode(&request, glance, wanted, &reporter)?
            }
        });
        let mut value = serde_json::to_value(&plan).map_err(Failure::new)?;
        let mut text = plan_text(&plan, &request);
        if let Some(fields) = value.as_object_mut() {
            fields.insert("dry_run".into(), json!(true));
            fields.insert("work_dir".into(), json!(request.work_dir));
            if args.to_file.is_none() {
                // Its value exists only once the uploaded data was verified.
                let mark = "sha512:<digest of the uploaded data>";
                fields.insert(
                    "set_after_upload".into(),
                    json!({ VERIFIED_PROPERTY: mark }),
                );
                text.push_str(&format!(
                    "once the upload is verified: {VERIFIED_PROPERTY} = {mark}\n"
                ));
            }
        }
        output.result(flavour_name(flavour), value, &text);
        return Ok(ExitCode::Success);
    }
    // Ctrl-C/SIGTERM stop between stages and chunks; the state stays resumable and an
    // unfinished target image is deleted by the upload's own cleanup.
    crate::interrupt::install().map_err(|e| Failure::new(format!("cannot handle signals: {e}")))?;
    let mode = match (stream_refusal(&args), &args.to_file) {
        (Some(choice), _) => choice,
        (None, Some(out)) => {
            let glance = connect(
                args.from.as_deref(),
                args.from_project.as_deref(),
                &reporter,
            )?;
            let wanted = args.source.as_deref().unwrap_or_default();
            match stream::to_file(&request, glance, wanted, out, &reporter)? {
                Outcome::Done(summary) => {
                    let value = serde_json::to_value(&summary).map_err(Failure::new)?;
                    output.summary(flavour_name(flavour), value, &summary_text(&summary));
                    return Ok(ExitCode::Success);
                }
                Outcome::Staged(choice) => choice,
            }
        }
        (None, None) => ModeChoice::staged("internal: no target"),
    };
    reporter.event(mode.event());
    let mut target = target(&args, &reporter)?;
    let mut summary = pipeline::run(&request, source.as_mut(), target.as_mut(), &reporter)?;
    summary.mode = Some(mode);
    let value = serde_json::to_value(&summary).map_err(Failure::new)?;
    output.summary(flavour_name(flavour), value, &summary_text(&summary));
    Ok(ExitCode::Success)
}

/// Why this request runs staged whatever the store and the guest, if it does.
fn stream_refusal(args: &MigrateArgs) -> Option<ModeChoice> {
    let reason = if args.staged {
        "--staged was given"
    } else if args.from_file.is_some() {
        "the source is a local file"
    } else if args.to_file.is_none() {
        "streaming into Glance is not built yet (only --to-file streams)"
    } else {
        return None;
    };
    Some(ModeChoice::staged(reason))
}

pub(super) fn flavour_name(flavour: Flavour) -> &'static str {
    match flavour {
        Flavour::Migrate => "migrate",
        Flavour::Template => "template",
    }
}

/// A session with cloud `cloud` (default OS_CLOUD), scoped to `project` if given.
pub(super) fn connect_session(
    cloud: Option<&str>,
    project: Option<&str>,
    reporter: &dyn Reporter,
) -> Result<Session, Failure> {
    let config =
        CloudCatalog::load(&ConfigEnv::from_process())?.select(cloud.filter(|c| !c.is_empty()))?;
    let options = SessionOptions {
        project: project.map(str::to_owned),
        ..SessionOptions::default()
    };
    Ok(Session::connect(&config, &options, reporter)?)
}

fn connect(
    cloud: Option<&str>,
    project: Option<&str>,
    reporter: &dyn Reporter,
) -> Result<Glance, Failure> {
    Ok(Glance::connect(connect_session(cloud, project, reporter)?)?)
}

fn source(args: &MigrateArgs, reporter: &dyn Reporter) -> Result<Box<dyn Source>, Failure> {
    if let Some(path) = &args.from_file {
        return Ok(Box::new(FileSource::new(path)));
    }
    let wanted = args.source.as_deref().unwrap_or_default();
    let glance = connect(args.from.as_deref(), args.from_project.as_deref(), reporter)?;
    Ok(Box::new(GlanceSource::new(glance, wanted)))
}

fn target(args: &MigrateArgs, reporter: &dyn Reporter) -> Result<Box<dyn Target>, Failure> {
    match &args.to_file {
        Some(path) => Ok(Box::new(FileTarget::new(path))),
        None => {
            let glance = connect(args.to.as_deref(), args.project.as_deref(), reporter)?;
            Ok(Box::new(GlanceTarget::new(glance)))
        }
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// Builds the pipeline request (and its digest) from the arguments.
fn request(args: &MigrateArgs, flavour: Flavour) -> Result<Request, Failure> {
    let usage = |e: pipeline::PipelineError| Failure::from(e).with_code(ExitCode::Usage);
    let set = args
        .property
        .iter()
        .map(|p| PropertyEdits::parse_assignment(p))
        .collect::<Result<Vec<_>, _>>()
        .map_err(usage)?;
    let edits = PropertyEdits {
        set,
        drop: args.drop_property.clone(),
    };
    edits.validate().map_err(usage)?;
    let (sysprep, sysprep_words) = sysprep_options(args, flavour)?;
    let output = OutputChoice {
        disk_format: args.disk_format.map(|f| match f {
            DiskFormatArg::Raw => DiskFormat::Raw,
            DiskFormatArg::Qcow2 => DiskFormat::Qcow2,
        }),
        compat: args.compat,
    };
    let visibility = args.visibility.map(|v| {
        match v {
            VisibilityArg::Private => "private",
            VisibilityArg::Shared => "shared",
            VisibilityArg::Community => "community",
            VisibilityArg::Public => "public",
        }
        .to_owned()
    });
    let source = match &args.from_file {
        Some(path) => json!({"file": absolute(path)}),
        // The project joins the description only when given, so earlier digests hold.
        None => match &args.from_project {
            Some(project) => json!({"cloud": args.from, "project": project, "image": args.source}),
            None => json!({"cloud": args.from, "image": args.source}),
        },
    };
    let target = match &args.to_file {
        Some(path) => json!({"file": absolute(path)}),
        None => json!({"cloud": args.to, "project": args.project}),
    };
    let description = json!({
        "source": source,
        "target": target,
        "name": args.name,
        "sysprep": sysprep_words,
        "hostname": args.hostname,
        "machine_id": format!("{:?}", args.machine_id),
        "delete": args.delete,
        "truncate": args.truncate,
        "remove_user_accounts": args.remove_user_accounts,
        "keep_user_accounts": args.keep_user_accounts,
        "compat": args.compat.map(Compat::name),
        "disk_format": output.disk_format.map(DiskFormat::name),
        "property": edits.set,
        "drop_property": edits.drop,
        "visibility": visibility,
    });
    let mut description = description;
    if args.target_as != TargetAsArg::Image || args.keep_images {
        // Only for volume-backed sources; left out otherwise so that the digests of
        // image-backed requests stay what earlier versions computed.
        description["target_as"] = json!(format!("{:?}", args.target_as));
        description["keep_images"] = json!(args.keep_images);
    }
    let digest = pipeline::request_digest(&description);
    let work_dir = match &args.work_dir {
        Some(dir) => dir.clone(),
        None => default_work_root().join(&digest),
    };
    Ok(Request {
        work_dir,
        digest,
        restart: args.restart,
        keep_work_dir: args.keep_work_dir,
        require_hash: args.require_hash,
        sysprep,
        sysprep_backend: args.backend.choice(),
        sysprep_words,
        output,
        name: args.name.clone(),
        visibility,
        edits,
        stop_after: args.test_stop_after,
    })
}

fn default_work_root() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    cache.join("imgferry/work")
}

/// The sysprep options and their description for provenance (`none`, `defaults`,
/// `migrate`, or the operation list; `+hostname`, `+delete`, `+truncate` appended).
fn sysprep_options(
    args: &MigrateArgs,
    flavour: Flavour,
) -> Result<(Option<sysprep::Options>, String), Failure> {
    if args.no_sysprep {
        return Ok((None, "none".to_owned()));
    }
    let mut words: Vec<Words> = args.enable.iter().cloned().map(Words::Enable).collect();
    words.extend(args.operations.iter().cloned().map(Words::Operations));
    if words.is_empty() && flavour == Flavour::Migrate {
        words.push(Words::Enable(MIGRATE_OPERATIONS.to_owned()));
    }
    let operations = sysprep::select(&words)?;
    let names: Vec<&str> = operations.iter().map(|op| op.name).collect();
    let defaults: Vec<&str> = OPERATIONS
        .iter()
        .filter(|op| op.default_on)
        .map(|op| op.name)
        .collect();
    let migrate_set: Vec<&str> = sysprep::select(&[Words::Enable(MIGRATE_OPERATIONS.to_owned())])?
        .iter()
        .map(|op| op.name)
        .collect();
    let mut description = if names == defaults {
        "defaults".to_owned()
    } else if names == migrate_set {
        "migrate".to_owned()
    } else if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(",")
    };
    for (given, word) in [
        (args.hostname.is_some(), "+hostname"),
        (!args.delete.is_empty(), "+delete"),
        (!args.truncate.is_empty(), "+truncate"),
        (!args.write.is_empty(), "+write"),
    ] {
        if given {
            description.push_str(word);
        }
    }
    let hostname = args.hostname.as_deref().map(Hostname::parse).transpose()?;
    let user_accounts = super::sysprep::user_accounts(
        &args.remove_user_accounts,
        &args.keep_user_accounts,
        &operations,
    )?;
    if !user_accounts.remove.is_empty() || !user_accounts.keep.is_empty() {
        description.push_str("+user-accounts");
    }
    if args.no_scrub {
        description.push_str("+no-scrub");
    }
    let options = sysprep::Options {
        operations,
        machine_id: match args.machine_id {
            MachineIdArg::Uninitialized => MachineIdMode::Uninitialized,
            MachineIdArg::Empty => MachineIdMode::Empty,
            MachineIdArg::Remove => MachineIdMode::Remove,
        },
        delete: args.delete.clone(),
        truncate: args.truncate.clone(),
        hostname,
        write: super::sysprep::writes(&args.write)?,
        user_accounts,
        dry_run: false,
        scrub: if args.no_scrub {
            Scrub::Keep
        } else {
            Scrub::Zero
        },
    };
    Ok((Some(options), description))
}

/// A JSON value's text for people (strings without quotes).
pub(super) fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
