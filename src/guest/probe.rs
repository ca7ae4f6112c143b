//! Recognising a mounted Linux root from its files, without libguestfs's inspection
//! (which loads Augeas and costs ~15 s per root under TCG): `/etc/os-release` (or
//! `/usr/lib/os-release`), `/etc/debian_version`, `/etc/redhat-release`,
//! `/etc/hostname`, `/etc/fstab`.
//!
//! Owns: those parsers, the os-release ID → distro name table (libguestfs's names,
//! so both paths report the same), and the device an fstab spec names by path
//! ([`device_named`]). Must not: mount anything (the backend mounts each
//! candidate at `/` and calls [`probe_root`]).

use super::{FileKind, GuestFs, GuestFsExt, Result};

/// Largest identity file read while probing.
const MAX_PROBE_BYTES: u64 = 64 * 1024;

/// What a Linux root says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootFacts {
    pub distro: String,
    pub major_version: i32,
    pub minor_version: i32,
    pub product_name: String,
    pub hostname: String,
    pub fstab: Vec<FstabEntry>,
}

/// One `/etc/fstab` line that names a filesystem to mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FstabEntry {
    /// `UUID=...`, `LABEL=...`, `/dev/...`.
    pub spec: String,
    pub mountpoint: String,
    pub fstype: String,
}

/// The libguestfs name of the device an fstab spec names by path, for both backends:
/// `/dev/vda2`, `/dev/xvda2`, `/dev/hda2` → `/dev/sda2` (the disk is attached as
/// `sda`), `/dev/mapper/VG-LV` → `/dev/VG/LV` (a `-` inside either name is written
/// `--`), any other `/dev/...` as it is; `None` for `UUID=`/`LABEL=` specs and a
/// mapper name without a single `-` separator.
pub fn device_named(spec: &str) -> Option<String> {
    if let Some(mapped) = spec.strip_prefix("/dev/mapper/") {
        return lv_of_mapper_name(mapped);
    }
    let name = spec.strip_prefix("/dev/")?;
    Some(disk_partition(name).unwrap_or_else(|| spec.to_owned()))
}

/// `VG-LV` → `/dev/VG/LV` (see [`device_named`]).
fn lv_of_mapper_name(mapped: &str) -> Option<String> {
    let bytes = mapped.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'-' {
            if bytes.get(i + 1) == Some(&b'-') {
                i += 2;
                continue;
            }
            let (vg, lv) = (&mapped[..i], &mapped[i + 1..]);
            if vg.is_empty() || lv.is_empty() {
                return None;
            }
            return Some(format!(
                "/dev/{}/{}",
                vg.replace("--", "-"),
                lv.replace("--", "-")
            ));
        }
        i += 1;
    }
    None
}

/// `vdb1`, `xvdb1`, `hdb1`, `sdb1` → `/dev/sdb1`.
fn disk_partition(disk: &str) -> Option<String> {
    let rest = ["xvd", "vd", "hd", "sd"]
        .iter()
        .find_map(|p| disk.strip_prefix(p))?;
    let letters = rest.chars().take_while(char::is_ascii_lowercase).count();
    let (drive, part) = rest.split_at(letters);
    (!drive.is_empty() && part.chars().all(|c| c.is_ascii_digit()))
        .then(|| format!("/dev/sd{drive}{part}"))
}

/// Filesystem types in fstab that are never a filesystem on this disk.
const NOT_ON_DISK: [&str; 14] = [
    "swap",
    "tmpfs",
    "proc",
    "sysfs",
    "devpts",
    "devtmpfs",
    "nfs",
    "nfs4",
    "cifs",
    "smbfs",
    "udf",
    "iso9660",
    "none",
    "fuse.sshfs",
];

/// The facts of the root mounted at `/`, or `None` when it is no Linux root (it needs
/// `/etc`, `/bin` or `/usr/bin`, and `/etc/fstab` or `/etc/hosts`, like libguestfs).
pub fn probe_root(guest: &mut dyn GuestFs) -> Result<Option<RootFacts>> {
    let is = |guest: &mut dyn GuestFs, path: &str, kind: FileKind| -> Result<bool> {
        Ok(guest.stat(path)?.is_some_and(|(_, meta)| meta.kind == kind))
    };
    let looks_like_root = is(guest, "/etc", FileKind::Directory)?
        && (is(guest, "/bin", FileKind::Directory)? || is(guest, "/usr/bin", FileKind::Directory)?)
        && (is(guest, "/etc/fstab", FileKind::File)? || is(guest, "/etc/hosts", FileKind::File)?);
    if !looks_like_root {
        return Ok(None);
    }
    let Some(release) =
        read_text(guest, "/etc/os-release")?.or(read_text(guest, "/usr/lib/os-release")?)
    else {
        return Ok(None);
    };
    let fields = parse_os_release(&release);
    let field = |key: &str| {
        fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    let distro = distro_name(&field("ID").unwrap_or_default());
    let mut version = field("VERSION_ID").unwrap_or_default();
    if distro == "debian" {
        if let Some(precise) = read_text(guest, "/etc/debian_version")? {
            let precise = precise.trim();
            if precise.starts_with(|c: char| c.is_ascii_digit()) {
                version = precise.to_owned();
            }
        }
    }
    // RHEL's clones say only "7" in os-release; the release file says "7.9.2009".
    if let Some(release) = read_text(guest, "/etc/redhat-release")? {
        if let Some(precise) = release.split("release ").nth(1) {
            let precise: String = precise
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            if precise.len() > version.len() && precise.starts_with(&version) {
                version = precise;
            }
        }
    }
    let (major_version, minor_version) = split_version(&version);
    let hostname = read_text(guest, "/etc/hostname")?
        .and_then(|text| text.lines().next().map(|l| l.trim().to_owned()))
        .unwrap_or_default();
    let fstab = read_text(guest, "/etc/fstab")?
        .map(|text| parse_fstab(&text))
        .unwrap_or_default();
    Ok(Some(RootFacts {
        distro,
        major_version,
        minor_version,
        product_name: field("PRETTY_NAME").unwrap_or_default(),
        hostname,
        fstab,
    }))
}

fn read_text(guest: &mut dyn GuestFs, path: &str) -> Result<Option<String>> {
    match guest.stat(path)? {
        Some((resolved, meta)) if meta.kind == FileKind::File && meta.size <= MAX_PROBE_BYTES => {
            let data = guest.read(&resolved, MAX_PROBE_BYTES)?;
            Ok(Some(String::from_utf8_lossy(&data).into_owned()))
        }
        _ => Ok(None),
    }
}

/// `KEY=value` pairs of an os-release file, quotes removed.
pub fn parse_os_release(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| line.trim().split_once('='))
        .filter(|(key, _)| !key.starts_with('#'))
        .map(|(key, value)| {
            let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
            (key.trim().to_owned(), value.to_owned())
        })
        .collect()
}

/// os-release `ID` → the distro name libguestfs inspection uses.
pub fn distro_name(id: &str) -> String {
    match id {
        "opensuse" | "opensuse-leap" | "opensuse-tumbleweed" => "opensuse",
        "sles" | "sled" => "sles",
        "ol" => "oraclelinux",
        "kali" => "kalilinux",
        "arch" => "archlinux",
        "alpine" => "alpinelinux",
        "scientific" => "scientificlinux",
        other => other,
    }
    .to_owned()
}

fn split_version(version: &str) -> (i32, i32) {
    let mut parts = version.split('.').map(|p| p.parse::<i32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// The fstab entries that name a filesystem of this disk to mount (`noauto`, swap,
/// network and pseudo filesystems left out).
pub fn parse_fstab(text: &str) -> Vec<FstabEntry> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (spec, mountpoint, fstype) = (fields.next()?, fields.next()?, fields.next()?);
            let options = fields.next().unwrap_or("defaults");
            let skip = !mountpoint.starts_with('/')
                || options.split(',').any(|o| o == "noauto" || o == "bind")
                || fstype.split(',').any(|t| NOT_ON_DISK.contains(&t));
            (!skip).then(|| FstabEntry {
                spec: spec.to_owned(),
                mountpoint: mountpoint.to_owned(),
                fstype: fstype.to_owned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fstab_device_names_become_libguestfs_names() {
        let named = |spec| device_named(spec);
        assert_eq!(named("/dev/vda2").as_deref(), Some("/dev/sda2"));
        assert_eq!(named("/dev/xvda").as_deref(), Some("/dev/sda"));
        assert_eq!(named("/dev/xvdb2").as_deref(), Some("/dev/sdb2"));
        assert_eq!(
            named("/dev/mapper/centos-root").as_deref(),
            Some("/dev/centos/root")
        );
        assert_eq!(
            named("/dev/mapper/my--vg-lv--1").as_deref(),
            Some("/dev/my-vg/lv-1")
        );
        assert_eq!(
            named("/dev/mapper/centos-data--1").as_deref(),
            Some("/dev/centos/data-1")
        );
        assert_eq!(named("/dev/mapper/novg"), None);
        assert_eq!(named("/dev/mapper/-root"), None);
        assert_eq!(named("/dev/mapper/vg-"), None);
        assert_eq!(named("/dev/rl/root").as_deref(), Some("/dev/rl/root"));
        assert_eq!(named("/dev/sr0").as_deref(), Some("/dev/sr0"));
        assert_eq!(
            named("/dev/disk/by-uuid/x").as_deref(),
            Some("/dev/disk/by-uuid/x")
        );
        assert_eq!(named("UUID=abc"), None);
    }
    use crate::guest::memory::MemoryGuest;

    #[test]
    fn fstab_keeps_filesystems_only() {
        let text = "# c\nUUID=1 / ext4 errors=remount-ro 0 1\nUUID=2 none swap sw 0 0\n\
                    /dev/sr0 /media/cdrom0 udf,iso9660 user,noauto 0 0\n\
                    /dev/mapper/rhel-root / xfs defaults 0 0\nLABEL=UEFI /boot/efi vfat umask=0077 0 1\n\
                    tmpfs /tmp tmpfs defaults 0 0\n";
        let got: Vec<(String, String)> = parse_fstab(text)
            .into_iter()
            .map(|e| (e.spec, e.mountpoint))
            .collect();
        assert_eq!(
            got,
            [
                ("UUID=1".to_owned(), "/".to_owned()),
                ("/dev/mapper/rhel-root".to_owned(), "/".to_owned()),
                ("LABEL=UEFI".to_owned(), "/boot/efi".to_owned()),
            ]
        );
    }

    #[test]
    fn probes_a_debian_root() {
        let mut guest = MemoryGuest::new("debian")
            .dir("/usr/bin")
            .link("/bin", "usr/bin")
            .file(
                "/usr/lib/os-release",
                "ID=debian\nVERSION_ID=\"12\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n",
            )
            .link("/etc/os-release", "../usr/lib/os-release")
            .file("/etc/debian_version", "12.5\n")
            .file("/etc/hostname", "debian-prod-01\n")
            .file("/etc/fstab", "UUID=1 / ext4 defaults 0 1\n");
        let facts = probe_root(&mut guest).unwrap().unwrap();
        let mut centos = MemoryGuest::new("centos")
            .dir("/usr/bin")
            .file("/etc/os-release", "ID=\"centos\"\nVERSION_ID=\"7\"\n")
            .file(
                "/etc/centos-release",
                "CentOS Linux release 7.9.2009 (Core)\n",
            )
            .link("/etc/redhat-release", "centos-release")
            .file("/etc/hosts", "127.0.0.1 localhost\n");
        let el = probe_root(&mut centos).unwrap().unwrap();
        assert_eq!(
            (el.distro.as_str(), el.major_version, el.minor_version),
            ("centos", 7, 9)
        );
        assert_eq!(facts.distro, "debian");
        assert_eq!((facts.major_version, facts.minor_version), (12, 5));
        assert_eq!(facts.hostname, "debian-prod-01");
        assert_eq!(facts.fstab.len(), 1);
        let mut boot = MemoryGuest::new("debian").file("/grub/grub.cfg", "x");
        assert!(probe_root(&mut boot).unwrap().is_none());
    }

    #[test]
    fn distro_names_match_libguestfs() {
        assert_eq!(distro_name("opensuse-leap"), "opensuse");
        assert_eq!(distro_name("rocky"), "rocky");
        assert_eq!(distro_name("ol"), "oraclelinux");
    }
}
