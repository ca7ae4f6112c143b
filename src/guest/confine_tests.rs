//! Unit tests of confined resolution against the in-memory guest.

use super::*;
use crate::guest::memory::MemoryGuest;

fn guest() -> MemoryGuest {
    MemoryGuest::new("debian")
        .file("/etc/hostname", "inside\n")
        .file("/etc/machine-id", "0123\n")
        .link("/var/lib/dbus/machine-id", "/etc/machine-id")
        .link("/var/run", "/run")
        .file("/run/utmp", "u")
        .link("/bin", "usr/bin")
        .file("/usr/bin/sh", "sh")
        .link("/etc/escape-abs", "/../../../../etc/hostname")
        .link("/etc/escape-rel", "../../../../../etc/hostname")
        .link("/etc/loop-a", "loop-b")
        .link("/etc/loop-b", "loop-a")
        .link("/etc/HOSTNAME", "hostname")
        .dir("/etc/ssh/backup_host_keys")
        .file("/etc/ssh/ssh_host_rsa_key", "k")
        .file("/etc/ssh/sshd_config", "c")
}

#[test]
fn dot_dot_stays_inside() {
    let mut g = guest();
    let p = g
        .resolve("/../../etc/../../etc/hostname", Follow::Final)
        .unwrap();
    assert_eq!(p.as_str(), "/etc/hostname");
    let p = g.resolve("/..", Follow::Final).unwrap();
    assert!(p.is_root());
}

#[test]
fn absolute_symlinks_restart_at_the_guest_root() {
    let mut g = guest();
    let p = g
        .resolve("/var/lib/dbus/machine-id", Follow::Final)
        .unwrap();
    assert_eq!(p.as_str(), "/etc/machine-id");
    let p = g
        .resolve("/var/lib/dbus/machine-id", Follow::ParentsOnly)
        .unwrap();
    assert_eq!(p.as_str(), "/var/lib/dbus/machine-id");
    let p = g.resolve("/var/run/utmp", Follow::ParentsOnly).unwrap();
    assert_eq!(p.as_str(), "/run/utmp");
    let p = g.resolve("/bin/sh", Follow::Final).unwrap();
    assert_eq!(p.as_str(), "/usr/bin/sh");
}

#[test]
fn escaping_symlinks_land_inside() {
    let mut g = guest();
    for link in ["/etc/escape-abs", "/etc/escape-rel"] {
        let (p, content) = g.read_file(link, 100).unwrap().unwrap();
        assert_eq!(p.as_str(), "/etc/hostname", "{link}");
        assert_eq!(content, b"inside\n");
    }
}

#[test]
fn symlink_loops_are_errors() {
    let mut g = guest();
    let err = g.resolve("/etc/loop-a", Follow::Final).unwrap_err();
    assert!(matches!(err, GuestError::SymlinkLoop { .. }), "{err}");
    // Not following the final component never loops.
    assert!(g.resolve("/etc/loop-a", Follow::ParentsOnly).is_ok());
}

#[test]
fn missing_parents_and_files() {
    let mut g = guest();
    let p = g.resolve("/etc/nothing", Follow::Final).unwrap();
    assert_eq!(p.as_str(), "/etc/nothing");
    assert!(matches!(
        g.resolve("/nope/x", Follow::Final),
        Err(GuestError::NotFound { .. })
    ));
    assert!(matches!(
        g.resolve("/etc/hostname/x", Follow::Final),
        Err(GuestError::NotADirectory { .. })
    ));
    assert!(g.stat("/nope/x").unwrap().is_none());
    assert!(matches!(
        g.resolve("relative", Follow::Final),
        Err(GuestError::InvalidPath { .. })
    ));
}

#[test]
fn glob_follows_directories_not_matches() {
    let mut g = guest();
    let found: Vec<String> = g
        .glob("/etc/ssh/*_host_*")
        .unwrap()
        .into_iter()
        .map(|(p, m)| format!("{p} {}", m.kind.name()))
        .collect();
    assert_eq!(
        found,
        [
            "/etc/ssh/backup_host_keys directory",
            "/etc/ssh/ssh_host_rsa_key file"
        ]
    );
    let found = g.glob("/var/run/*").unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].0.as_str(), "/run/utmp");
    assert!(g.glob("/nope/*/x").unwrap().is_empty());
    let links = g.glob("/etc/escape-*").unwrap();
    assert!(links.iter().all(|(_, m)| m.kind == FileKind::Symlink));
}

#[test]
fn walk_lists_everything_below() {
    let mut g = guest();
    let root = g.resolve("/etc/ssh", Follow::Final).unwrap();
    let all: Vec<String> = g
        .walk(&root)
        .unwrap()
        .into_iter()
        .map(|(p, _)| p.to_string())
        .collect();
    assert_eq!(
        all,
        [
            "/etc/ssh/backup_host_keys",
            "/etc/ssh/ssh_host_rsa_key",
            "/etc/ssh/sshd_config"
        ]
    );
}
