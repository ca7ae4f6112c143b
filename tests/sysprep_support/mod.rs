//! Helpers for the sysprep tests: fixtures from `scripts/make-fixtures` (cached), the
//! appliance environment from `scripts/guestfs-env`, copies as qcow2 overlays of the
//! cached images, and full listings (path, kind, mode, sha256) of a guest read through
//! the `GuestFs` trait.
//!
//! These tests need libguestfs: when its tools or a fixture are missing they FAIL with
//! what to run, they never skip.
#![allow(dead_code)] // each sysprep test crate uses a different subset

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use imgferry::guest::libguestfs::{Access, Session};
use imgferry::guest::native::NativeGuest;
use imgferry::guest::{
    BlockId, FileKind, GuestError, GuestFs, GuestFsExt, Metadata, OsInfo, Resolved,
    Result as GuestResult, SkippedMount,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

const ALL_FIXTURES: &str = "debian,ubuntu,suse,centos7,rocky9";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Fails the test with instructions unless the libguestfs tools are installed.
pub fn require_guestfs_tools() {
    for tool in ["guestfish", "virt-sysprep", "qemu-img"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "{tool} not found: the sysprep tests need libguestfs. Run scripts/install-deps --guestfs, \
             then scripts/make-fixtures (see scripts/test)"
        );
    }
}

/// Where the fixtures are: `$IMGFERRY_FIXTURE_DIR`, else ~/.cache/imgferry/fixtures.
fn fixture_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("IMGFERRY_FIXTURE_DIR") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").expect("HOME must be set to find the fixture cache");
    PathBuf::from(home).join(".cache/imgferry/fixtures")
}

/// Makes sure every fixture is built and current (well under a second when cached).
fn ensure_fixtures() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        require_guestfs_tools();
        let out = Command::new(repo().join("scripts/make-fixtures"))
            .args(["--only", ALL_FIXTURES])
            .output()
            .expect("cannot run scripts/make-fixtures");
        assert!(
            out.status.success(),
            "scripts/make-fixtures failed ({}); run it by hand to see why:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// A cached fixture image and its facts (`NAME.json`).
pub struct Fixture {
    pub name: &'static str,
    pub image: PathBuf,
    pub facts: Value,
}

/// The fixture `name`, built if needed.
pub fn fixture(name: &'static str) -> Fixture {
    ensure_fixtures();
    let dir = fixture_dir();
    let image = dir.join(format!("{name}.qcow2"));
    let facts_text = std::fs::read_to_string(dir.join(format!("{name}.json")))
        .unwrap_or_else(|e| panic!("fixture {name}: cannot read its facts: {e}"));
    Fixture {
        name,
        image,
        facts: serde_json::from_str(&facts_text).expect("fixture facts are JSON"),
    }
}

impl Fixture {
    /// A writable copy in `dir`: a qcow2 overlay whose backing file is the cached image.
    pub fn copy(&self, dir: &Path, label: &str) -> PathBuf {
        let copy = dir.join(format!("{}-{label}.qcow2", self.name));
        let out = Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
            .arg(&self.image)
            .arg(&copy)
            .output()
            .expect("cannot run qemu-img");
        assert!(
            out.status.success(),
            "qemu-img create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        copy
    }

    /// A writable standalone copy in `dir` (a plain copy of the cached qcow2 image: the
    /// native backend does not patch images with a backing file).
    pub fn standalone_copy(&self, dir: &Path, label: &str) -> PathBuf {
        let copy = dir.join(format!("{}-{label}.qcow2", self.name));
        std::fs::copy(&self.image, &copy).expect("copy the fixture image");
        copy
    }

    /// A string from the facts, e.g. `fact("identity", "hostname")`.
    pub fn fact(&self, section: &str, key: &str) -> String {
        self.facts[section][key]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no fact {section}.{key}", self.name))
            .to_owned()
    }
}

/// The environment `scripts/guestfs-env` says the appliance needs (for virt-sysprep).
pub fn guestfs_env() -> &'static [(String, String)] {
    static ENV: OnceLock<Vec<(String, String)>> = OnceLock::new();
    ENV.get_or_init(|| {
        let out = Command::new(repo().join("scripts/guestfs-env"))
            .output()
            .expect("cannot run scripts/guestfs-env");
        assert!(
            out.status.success(),
            "scripts/guestfs-env: the libguestfs appliance does not boot here:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    })
}

/// Runs real `virt-sysprep -a IMAGE ARGS`; returns (success, stderr).
pub fn virt_sysprep(image: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("virt-sysprep")
        .envs(guestfs_env().iter().map(|(k, v)| (k, v)))
        .args(["--format", "qcow2", "-a"])
        .arg(image)
        .args(args)
        .output()
        .expect("cannot run virt-sysprep");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `sha256` of a host file, hex.
pub fn sha256_file(path: &Path) -> String {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    hex(&Sha256::digest(&data))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every path of a guest: `file MODE SHA256`, `directory MODE`, `symlink -> TARGET`.
pub type Listing = BTreeMap<String, String>;

/// The full listing of what is mounted (crossing into every mounted filesystem).
pub fn listing(guest: &mut dyn GuestFs) -> Listing {
    let root = guest
        .resolve("/", imgferry::guest::Follow::Final)
        .expect("resolve /");
    let mut listing = Listing::new();
    for (path, meta) in guest.walk(&root).expect("walk /") {
        let value = match meta.kind {
            FileKind::File => {
                let data = guest.read(&path, 1 << 30).expect("read a guest file");
                format!("file {:o} {}", meta.mode, hex(&Sha256::digest(&data)))
            }
            FileKind::Directory => format!("directory {:o}", meta.mode),
            FileKind::Symlink => {
                format!("symlink -> {}", guest.read_link(&path).expect("readlink"))
            }
            FileKind::Other => format!("special {:o}", meta.mode),
        };
        listing.insert(path.to_string(), value);
    }
    listing
}

/// Opens `image` for a dry run and lists its (single) OS root: one appliance launch.
pub fn listing_of(image: &Path) -> (OsInfo, Listing) {
    let mut session = Session::open(image, Access::DryRun).expect("open a dry-run session");
    let mut roots = session.inspect().expect("inspect");
    assert_eq!(roots.len(), 1, "{}: one OS root expected", image.display());
    let os = roots.remove(0);
    session.mount_os(&os).expect("mount");
    let listing = listing(&mut session);
    (os, listing)
}

/// Like [`listing_of`], with the disk's filesystem, PV and VG UUIDs (same launch).
pub fn listing_and_ids_of(image: &Path) -> (Listing, Vec<BlockId>) {
    let mut session = Session::open(image, Access::DryRun).expect("open a dry-run session");
    let ids = session.block_ids().expect("block ids");
    let mut roots = session.inspect().expect("inspect");
    assert_eq!(roots.len(), 1, "{}: one OS root expected", image.display());
    session.mount_os(&roots.remove(0)).expect("mount");
    (listing(&mut session), ids)
}

/// Writes the guest tree of `image` (its single OS) below `root` on the host: files,
/// directories and symlinks with their modes.
pub fn extract_tree(image: &Path, root: &Path) {
    let mut guest = NativeGuest::open_file(image).expect("open natively");
    let os = guest.inspect().expect("inspect").remove(0);
    guest.mount_os(&os).expect("mount");
    let top = guest.resolve("/", imgferry::guest::Follow::Final).unwrap();
    let mut directories = Vec::new();
    for (path, meta) in guest.walk(&top).expect("walk") {
        let host = root.join(path.as_str().trim_start_matches('/'));
        std::fs::create_dir_all(host.parent().unwrap()).unwrap();
        match meta.kind {
            FileKind::Directory => {
                std::fs::create_dir_all(&host).unwrap();
                directories.push((host, meta.mode));
            }
            FileKind::File => {
                let data = guest.read(&path, 1 << 30).expect("read");
                std::fs::write(&host, data).unwrap();
                std::fs::set_permissions(&host, PermissionsExt::from_mode(meta.mode)).unwrap();
            }
            FileKind::Symlink => {
                let target = guest.read_link(&path).expect("readlink");
                std::os::unix::fs::symlink(target, &host).unwrap();
            }
            FileKind::Other => panic!("{path}: special files are not extracted"),
        }
    }
    for (host, mode) in directories.into_iter().rev() {
        std::fs::set_permissions(&host, PermissionsExt::from_mode(mode)).unwrap();
    }
}

/// Paths whose entry differs between two listings (present in one only, or changed).
pub fn differences(a: &Listing, b: &Listing) -> BTreeSet<String> {
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect()
}

/// The paths of a listing, for "removed" and "kept" assertions.
pub fn has(listing: &Listing, path: &str) -> bool {
    listing.contains_key(path)
}

/// Delegates to a real guest but fails the Nth change.
pub struct FailingGuest<'a> {
    pub inner: &'a mut dyn GuestFs,
    pub changes_left: usize,
}

impl FailingGuest<'_> {
    fn change(&mut self, path: &str) -> GuestResult<()> {
        if self.changes_left == 0 {
            return Err(GuestError::Backend {
                operation: "injected failure",
                path: path.to_owned(),
                message: "the test made this change fail".to_owned(),
            });
        }
        self.changes_left -= 1;
        Ok(())
    }
}

impl GuestFs for FailingGuest<'_> {
    fn inspect(&mut self) -> GuestResult<Vec<OsInfo>> {
        self.inner.inspect()
    }
    fn mount_os(&mut self, os: &OsInfo) -> GuestResult<Vec<SkippedMount>> {
        self.inner.mount_os(os)
    }
    fn unmount_all(&mut self) -> GuestResult<()> {
        self.inner.unmount_all()
    }
    fn lstat(&mut self, path: &Resolved) -> GuestResult<Option<Metadata>> {
        self.inner.lstat(path)
    }
    fn read_link(&mut self, path: &Resolved) -> GuestResult<String> {
        self.inner.read_link(path)
    }
    fn list_dir(&mut self, path: &Resolved) -> GuestResult<Vec<String>> {
        self.inner.list_dir(path)
    }
    fn read_dir(&mut self, path: &Resolved) -> GuestResult<Vec<(String, Metadata)>> {
        self.inner.read_dir(path)
    }
    fn read(&mut self, path: &Resolved, limit: u64) -> GuestResult<Vec<u8>> {
        self.inner.read(path, limit)
    }
    fn write(&mut self, path: &Resolved, content: &[u8]) -> GuestResult<()> {
        self.change(path.as_str())?;
        self.inner.write(path, content)
    }
    fn truncate(&mut self, path: &Resolved) -> GuestResult<()> {
        self.change(path.as_str())?;
        self.inner.truncate(path)
    }
    fn remove_file(&mut self, path: &Resolved) -> GuestResult<()> {
        self.change(path.as_str())?;
        self.inner.remove_file(path)
    }
    fn remove_tree(&mut self, path: &Resolved) -> GuestResult<()> {
        self.change(path.as_str())?;
        self.inner.remove_tree(path)
    }
    fn mkdir(&mut self, path: &Resolved) -> GuestResult<()> {
        self.change(path.as_str())?;
        self.inner.mkdir(path)
    }
    fn symlink(&mut self, target: &str, path: &Resolved) -> GuestResult<()> {
        self.change(path.as_str())?;
        self.inner.symlink(target, path)
    }
    fn block_ids(&mut self) -> GuestResult<Vec<BlockId>> {
        self.inner.block_ids()
    }
    fn set_fs_uuid(&mut self, device: &str, uuid: &str) -> GuestResult<()> {
        self.change(device)?;
        self.inner.set_fs_uuid(device, uuid)
    }
    fn renew_lvm_uuids(&mut self) -> GuestResult<()> {
        self.change("LVM")?;
        self.inner.renew_lvm_uuids()
    }
}
