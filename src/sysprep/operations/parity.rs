//! virt-sysprep operations that need more than "remove what these globs match":
//! tmp-files, cron-spool, pacct-log, backup-files, package-manager-cache,
//! kerberos-data, ca-certificates, net-nmconn, flag-reconfiguration.
//!
//! Owns: those rules, with virt-sysprep 1.48's paths. Must not: run programs in the
//! guest (nothing here does; see docs/commands/sysprep.md for what virt-sysprep would run).

use super::super::plan::Planner;
use super::super::Result;
use super::{remove_files_below, remove_matches};
use crate::guest::{glob, Family, FileKind};

/// Everything inside `/tmp` and `/var/tmp` (dot files too), not the directories.
pub fn tmp_files(planner: &mut Planner) -> Result<()> {
    for dir in ["/tmp", "/var/tmp"] {
        let patterns = [format!("{dir}/*"), format!("{dir}/.*")];
        remove_matches(
            planner,
            &[patterns[0].as_str(), patterns[1].as_str()],
            |_| true,
        )?;
    }
    Ok(())
}

const SEQ_RESET: &[u8] = b"00000\n";

/// Jobs in the cron and at spools; at's `.SEQ` counters reset to `00000`.
pub fn cron_spool(planner: &mut Planner) -> Result<()> {
    let is_seq = |name: &str| name == ".SEQ";
    remove_files_below(planner, "/var/spool/cron", is_seq)?;
    reset_seq(planner, "/var/spool/cron/atjobs/.SEQ")?;
    remove_matches(
        planner,
        &["/var/spool/atjobs/*", "/var/spool/atspool/*"],
        |kind| kind != FileKind::Directory,
    )?;
    reset_seq(planner, "/var/spool/atjobs/.SEQ")?;
    remove_files_below(planner, "/var/spool/at", is_seq)?;
    reset_seq(planner, "/var/spool/at/.SEQ")
}

fn reset_seq(planner: &mut Planner, path: &str) -> Result<()> {
    if let Some((path, meta)) = planner.lookup(path)? {
        if meta.kind == FileKind::File {
            let old = planner.read(&path)?;
            planner.replace(&path, Some(&old), SEQ_RESET);
        }
    }
    Ok(())
}

/// Process accounting: rotated logs removed, the live `pacct` emptied.
pub fn pacct_log(planner: &mut Planner) -> Result<()> {
    for pattern in ["/var/account/pacct*", "/var/log/account/pacct*"] {
        for (path, meta) in planner.glob(pattern)? {
            match (path.file_name(), meta.kind) {
                (Some("pacct"), FileKind::File) => planner.truncate(&path, meta),
                (_, FileKind::Directory) => {}
                _ => planner.remove(&path, meta)?,
            }
        }
    }
    Ok(())
}

/// Where backup-files looks (virt-sysprep's list for Unix-like guests).
pub const BACKUP_DIRS: [&str; 5] = ["/etc", "/root", "/srv", "/tmp", "/var"];
const BACKUP_GLOBS: [&str; 2] = ["*.bak", "*~"];

/// Regular files named `*.bak` or `*~` anywhere below [`BACKUP_DIRS`].
pub fn backup_files(planner: &mut Planner) -> Result<()> {
    for top in BACKUP_DIRS {
        let Some((dir, meta)) = planner.lookup(top)? else {
            continue;
        };
        if meta.kind != FileKind::Directory {
            continue;
        }
        for (path, meta) in planner.walk(&dir)? {
            let name = path.file_name().unwrap_or_default();
            if meta.kind == FileKind::File && BACKUP_GLOBS.iter().any(|g| glob::matches(g, name)) {
                planner.remove(&path, meta)?;
            }
        }
    }
    Ok(())
}

/// Package caches of apt, dnf, yum and zypper: files go, directories stay.
pub fn package_manager_cache(planner: &mut Planner) -> Result<()> {
    for dir in [
        "/var/cache/apt/archives",
        "/var/cache/dnf",
        "/var/cache/yum",
    ] {
        remove_files_below(planner, dir, |_| false)?;
    }
    for (dir, meta) in planner.glob("/var/cache/zypp*")? {
        if meta.kind == FileKind::Directory {
            remove_files_below(planner, dir.as_str(), |_| false)?;
        }
    }
    Ok(())
}

/// KDC data, keeping its configuration (`kadm5.acl`, `kdc.conf`).
pub fn kerberos_data(planner: &mut Planner) -> Result<()> {
    for (path, meta) in planner.glob("/var/kerberos/krb5kdc/*")? {
        let keep = matches!(path.file_name(), Some("kadm5.acl" | "kdc.conf"));
        if !keep && meta.kind != FileKind::Directory {
            planner.remove(&path, meta)?;
        }
    }
    Ok(())
}

/// Certificates and keys under /etc/pki, keeping the system CA bundles.
pub fn ca_certificates(planner: &mut Planner) -> Result<()> {
    const GLOBS: [&str; 6] = [
        "/etc/pki/CA/certs/*.crt",
        "/etc/pki/CA/crl/*.crt",
        "/etc/pki/CA/newcerts/*.crt",
        "/etc/pki/CA/private/*.key",
        "/etc/pki/tls/private/*.key",
        "/etc/pki/tls/certs/*.crt",
    ];
    for pattern in GLOBS {
        for (path, meta) in planner.glob(pattern)? {
            let bundle = matches!(
                path.file_name(),
                Some("ca-bundle.crt" | "ca-bundle.trust.crt")
            );
            if !bundle && meta.kind != FileKind::Directory {
                planner.remove(&path, meta)?;
            }
        }
    }
    Ok(())
}

/// NetworkManager keyfile profiles (with virt-sysprep's glob), on the RHEL family
/// only — virt-sysprep 1.48's list (Fedora, RHEL, CentOS, Scientific, Oracle) plus
/// the clones its list misses (Rocky, AlmaLinux, ...). Elsewhere the profiles are left:
/// virt-sysprep leaves them too.
pub fn net_nmconn(planner: &mut Planner) -> Result<()> {
    if planner.os.family != Family::Rhel {
        return Ok(());
    }
    remove_matches(
        planner,
        &["/etc/NetworkManager/system-connections/*.nmconnection"],
        |kind| kind != FileKind::Directory,
    )
}

/// `/.unconfigured` (empty), which makes the first boot ask for the root password,
/// timezone and so on (initial-setup). Nothing when it already exists.
pub fn flag_reconfiguration(planner: &mut Planner) -> Result<()> {
    if planner.lookup("/.unconfigured")?.is_some() {
        return Ok(());
    }
    let path = planner.resolve_new("/.unconfigured")?;
    planner.replace(&path, None, b"");
    Ok(())
}
