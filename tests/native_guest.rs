//! The native backend through the `GuestFs` trait: inspection of the debian and ubuntu
//! fixtures without an appliance, compared with what libguestfs inspection recorded
//! for them (`NAME.json`, written by scripts/make-fixtures from `inspect_os`);
//! confinement of symlinks that try to escape the guest (the read-side checks of
//! tests/sysprep_safety.rs, on a guest made by mke2fs -d); edits through the trait
//! reaching the image only on commit (e2fsck-clean, read back with debugfs), and a
//! failed edit leaving the image byte-identical.

mod native_support;

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::Path;

use imgferry::guest::native::NativeGuest;
use imgferry::guest::{Family, Follow, GuestError, GuestFs, GuestFsExt};
use native_support::{arg, blank_disk, fixture, open_disk, run};
use serde_json::Value;

fn facts(name: &str) -> Value {
    let json = fixture(name).with_extension("json");
    serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap()
}

#[test]
fn inspection_matches_libguestfs_on_the_debian_and_ubuntu_fixtures() {
    for name in ["debian", "ubuntu"] {
        let image = fixture(name);
        let expected = &facts(name)["inspection"];
        let mut guest = NativeGuest::open(open_disk(&image), &image).unwrap();
        let roots = guest.inspect().unwrap();
        assert_eq!(roots.len(), 1, "{name}: {roots:?}");
        let os = &roots[0];
        assert_eq!(os.root, expected["root"].as_str().unwrap(), "{name}");
        assert_eq!(os.kind, expected["type"].as_str().unwrap(), "{name}");
        assert_eq!(os.distro, expected["distro"].as_str().unwrap(), "{name}");
        assert_eq!(os.family, Family::Debian, "{name}");
        assert_eq!(
            i64::from(os.major_version),
            expected["major"].as_i64().unwrap()
        );
        assert_eq!(
            i64::from(os.minor_version),
            expected["minor"].as_i64().unwrap()
        );
        assert_eq!(
            os.hostname,
            expected["hostname"].as_str().unwrap(),
            "{name}"
        );
        // Every mountpoint libguestfs found on an ext filesystem is found natively; the
        // others (ubuntu's vfat /boot/efi) are reported as skipped by mount_os.
        let mut native_mounts: Vec<(String, String)> = os.mountpoints.clone();
        let skipped = guest.mount_os(os).unwrap();
        for s in &skipped {
            native_mounts.push((s.mountpoint.clone(), "(skipped)".to_owned()));
        }
        let mut libguestfs_mounts: Vec<(String, String)> = expected["mountpoints"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(m, d)| {
                let on_ext = os.mountpoints.iter().any(|(nm, _)| nm == m);
                let device = if on_ext {
                    d.as_str().unwrap().to_owned()
                } else {
                    "(skipped)".to_owned()
                };
                (m.clone(), device)
            })
            .collect();
        native_mounts.sort();
        libguestfs_mounts.sort();
        assert_eq!(native_mounts, libguestfs_mounts, "{name}");
        if name == "ubuntu" {
            assert_eq!(skipped.len(), 1, "{skipped:?}");
            assert_eq!(
                (skipped[0].mountpoint.as_str(), skipped[0].device.as_str()),
                ("/boot/efi", "LABEL=UEFI")
            );
        }
        // Reads through the trait, following the guest's own symlinks.
        let (_, hostname) = guest.read_file("/etc/hostname", 4096).unwrap().unwrap();
        assert_eq!(String::from_utf8_lossy(&hostname).trim(), os.hostname);
        let machine_id = facts(name)["identity"]["machine_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let (_, content) = guest.read_file("/etc/machine-id", 4096).unwrap().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&content).trim(),
            machine_id,
            "{name}"
        );
    }
}

/// A whole-disk ext4 guest with symlinks that try to leave it.
fn hostile_guest(dir: &Path) -> std::path::PathBuf {
    let tree = dir.join("tree");
    for sub in ["etc", "usr/bin", "run"] {
        std::fs::create_dir_all(tree.join(sub)).unwrap();
    }
    std::fs::write(tree.join("etc/hostname"), "confined\n").unwrap();
    std::fs::write(tree.join("etc/hosts"), "127.0.0.1 localhost\n").unwrap();
    std::fs::write(
        tree.join("etc/os-release"),
        "ID=debian\nVERSION_ID=\"12\"\n",
    )
    .unwrap();
    std::fs::write(tree.join("run/utmp"), "").unwrap();
    symlink("/run", tree.join("var-run")).unwrap();
    std::fs::create_dir(tree.join("var")).unwrap();
    symlink("/run", tree.join("var/run")).unwrap();
    symlink("usr/bin", tree.join("bin")).unwrap();
    std::fs::create_dir(tree.join("odd")).unwrap();
    let latin1 = std::ffi::OsStr::from_bytes(b"caf\xe9");
    std::fs::write(tree.join("odd").join(latin1), "not UTF-8\n").unwrap();
    for (name, target) in [
        ("escape-abs", "/../../../../etc/hostname"),
        ("escape-rel", "../../../../../../etc/hostname"),
        ("escape-dir", "/../../.."),
        ("loop-a", "loop-b"),
        ("loop-b", "loop-a"),
    ] {
        symlink(target, tree.join("etc").join(name)).unwrap();
    }
    let image = dir.join("hostile.img");
    blank_disk(&image, 16 << 20);
    run(
        "mke2fs",
        &["-q", "-F", "-t", "ext4", "-d", arg(&tree), arg(&image)],
    );
    image
}

#[test]
fn symlinks_cannot_leave_the_guest() {
    let dir = tempfile::tempdir().unwrap();
    let image = hostile_guest(dir.path());
    let mut guest = NativeGuest::open(open_disk(&image), &image).unwrap();
    let os = guest.inspect().unwrap().remove(0);
    assert_eq!(
        (os.root.as_str(), os.distro.as_str()),
        ("/dev/sda", "debian")
    );
    assert!(guest.mount_os(&os).unwrap().is_empty());
    for path in [
        "/etc/escape-abs",
        "/etc/escape-rel",
        "/etc/escape-dir/etc/hostname",
        "/../../etc/../../etc/hostname",
    ] {
        let (resolved, content) = guest.read_file(path, 4096).unwrap().unwrap();
        assert_eq!(resolved.as_str(), "/etc/hostname", "{path}");
        assert_eq!(
            String::from_utf8_lossy(&content).trim(),
            "confined",
            "{path}"
        );
    }
    assert!(guest
        .resolve("/etc/escape-dir", Follow::Final)
        .unwrap()
        .is_root());
    assert!(matches!(
        guest.resolve("/etc/loop-a", Follow::Final),
        Err(GuestError::SymlinkLoop { .. })
    ));
    let matched: Vec<String> = guest
        .glob("/etc/escape-dir/etc/host*")
        .unwrap()
        .into_iter()
        .map(|(p, _)| p.to_string())
        .collect();
    assert!(matched.contains(&"/etc/hostname".to_owned()), "{matched:?}");
    let (utmp, _) = guest.glob("/var/run/utmp").unwrap().remove(0);
    assert_eq!(utmp.as_str(), "/run/utmp");
    // A name that is not UTF-8 fails the listing instead of being mangled or skipped.
    let odd = guest.resolve("/odd", Follow::Final).unwrap();
    let err = guest.read_dir(&odd).unwrap_err();
    assert!(err.to_string().contains("not UTF-8"), "{err}");
}

#[test]
fn edits_reach_the_image_only_on_commit() {
    let dir = tempfile::tempdir().unwrap();
    let image = hostile_guest(dir.path());
    let before = std::fs::read(&image).unwrap();
    let edit = |guest: &mut NativeGuest| {
        let os = guest.inspect().unwrap().remove(0);
        guest.mount_os(&os).unwrap();
        let hostname = guest.resolve("/etc/hostname", Follow::Final).unwrap();
        guest.write(&hostname, b"changed\n").unwrap();
        assert_eq!(guest.read(&hostname, 100).unwrap(), b"changed\n");
        let hosts = guest.resolve("/etc/hosts", Follow::Final).unwrap();
        guest.truncate(&hosts).unwrap();
        let utmp = guest.resolve("/run/utmp", Follow::Final).unwrap();
        guest.remove_file(&utmp).unwrap();
        assert_eq!(guest.lstat(&utmp).unwrap(), None);
        let new = guest.resolve("/etc/new-file", Follow::Final).unwrap();
        guest.write(&new, b"new\n").unwrap();
        let odd = guest.resolve("/odd", Follow::Final).unwrap();
        guest.remove_tree(&odd).unwrap();
        // Not needed by sysprep, so not done natively: refused, nothing changed.
        let err = guest.mkdir(&odd).unwrap_err();
        assert!(err.is_native_limitation(), "{err}");
    };
    let mut guest = NativeGuest::open(open_disk(&image), &image).unwrap();
    edit(&mut guest);
    drop(guest);
    assert!(
        std::fs::read(&image).unwrap() == before,
        "dropped edits changed the image"
    );

    let mut guest = NativeGuest::open(open_disk(&image), &image).unwrap();
    edit(&mut guest);
    let report = guest.commit().unwrap();
    assert!(report.writes > 0 && report.format == "raw", "{report:?}");
    run("e2fsck", &["-fn", arg(&image)]);
    let cat = run("debugfs", &["-R", "cat /etc/hostname", arg(&image)]);
    assert_eq!(cat, "changed\n");
    let listing = run("debugfs", &["-R", "ls -l /", arg(&image)]);
    assert!(!listing.contains(" odd"), "{listing}");
}

#[test]
fn a_failed_edit_poisons_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let image = hostile_guest(dir.path());
    let before = std::fs::read(&image).unwrap();
    let mut guest = NativeGuest::open(open_disk(&image), &image).unwrap();
    let os = guest.inspect().unwrap().remove(0);
    guest.mount_os(&os).unwrap();
    let hostname = guest.resolve("/etc/hostname", Follow::Final).unwrap();
    guest.write(&hostname, b"changed\n").unwrap();
    // A directory cannot be truncated: the edit fails, and so does everything after.
    let etc = guest.resolve("/etc", Follow::Final).unwrap();
    assert!(guest.truncate(&etc).is_err());
    let err = guest.write(&hostname, b"again\n").unwrap_err();
    assert!(err.to_string().contains("an earlier edit failed"), "{err}");
    assert!(guest.commit().is_err());
    assert!(
        std::fs::read(&image).unwrap() == before,
        "the image changed"
    );
}
