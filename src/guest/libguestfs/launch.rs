//! Starting the appliance: which accelerator, decided at run time.
//!
//! Order: `LIBGUESTFS_BACKEND_SETTINGS` from the environment wins (the user decided;
//! libguestfs reads it itself). Otherwise, when `/dev/kvm` is usable and no cached
//! verdict says it fails, launch with KVM; when that launch fails (on some nested
//! hosts qemu aborts in `kvm_buf_set_msrs`), launch again with `force_tcg`. The
//! verdict is remembered in `~/.cache/imgferry/guestfs-accel` — the same file and key
//! as `scripts/guestfs-env` (qemu and libguestfs versions, host kernel, whether
//! `/dev/kvm` exists) — so only the first run on a machine pays for a failed probe.
//! Owns: that decision and the cache. Must not: touch guest files.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::{call, ffi};
use crate::guest::{GuestError, Result};

/// How the appliance ended up running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accelerator {
    Kvm,
    /// Software emulation (`force_tcg`), after KVM failed or was unusable.
    Tcg,
    /// Whatever `LIBGUESTFS_BACKEND_SETTINGS` said.
    Environment(String),
}

impl fmt::Display for Accelerator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Kvm => f.write_str("kvm"),
            Self::Tcg => f.write_str("tcg"),
            Self::Environment(settings) => write!(f, "LIBGUESTFS_BACKEND_SETTINGS={settings}"),
        }
    }
}

/// The one drive a session attaches.
pub struct Drive {
    pub path: PathBuf,
    pub format: &'static str,
    pub readonly: bool,
}

/// A launched appliance.
pub struct Launched {
    pub handle: ffi::Handle,
    pub accelerator: Accelerator,
    pub elapsed: Duration,
}

/// Launches an appliance with `drive` attached; `image` names the user's file in errors.
pub fn launch(image: &Path, drive: &Drive) -> Result<Launched> {
    let start = Instant::now();
    let launched = |handle, accelerator| Launched {
        handle,
        accelerator,
        elapsed: start.elapsed(),
    };
    if let Some(settings) = std::env::var("LIBGUESTFS_BACKEND_SETTINGS")
        .ok()
        .filter(|s| !s.is_empty())
    {
        let handle = handle_with(image, drive, false)?;
        start_appliance(&handle, image, None)?;
        return Ok(launched(handle, Accelerator::Environment(settings)));
    }
    let cache = VerdictCache::new();
    let kvm_usable = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    let mut kvm_failure = None;
    if kvm_usable && cache.as_ref().and_then(VerdictCache::verdict) != Some(Verdict::Tcg) {
        let handle = handle_with(image, drive, false)?;
        match handle.launch() {
            Ok(()) => {
                if let Some(cache) = &cache {
                    cache.store(Verdict::Kvm);
                }
                return Ok(launched(handle, Accelerator::Kvm));
            }
            Err(error) => kvm_failure = Some(error.to_string()),
        }
    }
    let handle = handle_with(image, drive, true)?;
    start_appliance(&handle, image, kvm_failure.as_deref())?;
    if let (Some(cache), true) = (&cache, kvm_usable) {
        cache.store(Verdict::Tcg);
    }
    Ok(launched(handle, Accelerator::Tcg))
}

fn handle_with(image: &Path, drive: &Drive, force_tcg: bool) -> Result<ffi::Handle> {
    let handle = ffi::Handle::create().map_err(|e| match e {
        ffi::Error::Unavailable(_) | ffi::Error::MissingSymbol { .. } => {
            GuestError::LibguestfsMissing {
                message: e.to_string(),
            }
        }
        _ => GuestError::Launch {
            image: image.to_path_buf(),
            message: format!("cannot create a libguestfs handle: {e}"),
        },
    })?;
    if force_tcg {
        call(
            "set_backend_settings",
            "force_tcg",
            handle.set_backend_settings(&["force_tcg"]),
        )?;
    }
    let path = drive.path.to_str().ok_or_else(|| GuestError::InvalidPath {
        path: drive.path.display().to_string(),
        reason: "libguestfs needs a UTF-8 file name",
    })?;
    let options = ffi::AddDriveOptArgs {
        readonly: Some(drive.readonly),
        format: Some(drive.format),
    };
    call("add_drive", path, handle.add_drive(path, options))?;
    Ok(handle)
}

fn start_appliance(handle: &ffi::Handle, image: &Path, kvm_failure: Option<&str>) -> Result<()> {
    handle.launch().map_err(|error| {
        let mut message = error.to_string();
        if let Some(kvm) = kvm_failure {
            message = format!("{message} (after a KVM launch failed: {kvm})");
        }
        GuestError::Launch {
            image: image.to_path_buf(),
            message,
        }
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Kvm,
    Tcg,
}

/// The accelerator verdict cache shared with `scripts/guestfs-env`.
struct VerdictCache {
    path: PathBuf,
    key: String,
}

impl VerdictCache {
    /// `None` when there is no cache directory (no `$HOME`).
    fn new() -> Option<Self> {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
        Some(Self {
            path: base.join("imgferry").join("guestfs-accel"),
            key: cache_key(),
        })
    }

    fn verdict(&self) -> Option<Verdict> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        let field = |name: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(name).map(str::to_owned))
        };
        if field("key=")? != self.key {
            return None;
        }
        match field("verdict=")?.as_str() {
            "kvm" => Some(Verdict::Kvm),
            "tcg" => Some(Verdict::Tcg),
            _ => None,
        }
    }

    /// Best effort: a cache that cannot be written only costs a probe next time.
    fn store(&self, verdict: Verdict) {
        let Some(dir) = self.path.parent() else {
            return;
        };
        let word = match verdict {
            Verdict::Kvm => "kvm",
            Verdict::Tcg => "tcg",
        };
        let text = format!("verdict={word}\nkey={}\nchecked=by imgferry\n", self.key);
        let _ = std::fs::create_dir_all(dir).and_then(|()| {
            let mut file = tempfile::NamedTempFile::new_in(dir)?;
            file.write_all(text.as_bytes())?;
            file.persist(&self.path).map(drop).map_err(|e| e.error)
        });
    }
}

/// `qemu=<qemu --version line 1>;guestfs=guestfish <version>;kernel=<release>;kvm=yes|no`,
/// exactly as `scripts/guestfs-env` writes it.
fn cache_key() -> String {
    let qemu = Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_owned))
        .unwrap_or_else(|| "none".to_owned());
    let guestfs = ffi::Handle::create()
        .ok()
        .and_then(|h| h.version().ok())
        .map(|v| format!("guestfish {}.{}.{}{}", v.major, v.minor, v.release, v.extra))
        .unwrap_or_else(|| "none".to_owned());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let kvm = if Path::new("/dev/kvm").exists() {
        "yes"
    } else {
        "no"
    };
    format!("qemu={qemu};guestfs={guestfs};kernel={kernel};kvm={kvm}")
}
