//! LVM2 in the native backend, against libguestfs (device-mapper in the appliance) as
//! the oracle:
//! - the lvm-ext4 fixture (scripts/make-lvm-fixture: VG centos with an ext4 root LV
//!   and a two-segment ext4 LV at /srv, fstab by /dev/mapper names): the LVs natively
//!   found equal `lvs`, with libguestfs's sizes; native edits on both LVs and new PV
//!   and VG UUIDs are committed, then ONE libguestfs session on the edited image sees
//!   the same inspection, the same full file listing (modes, symlinks, sha256 of every file)
//!   and the same filesystem, PV and VG UUIDs as the native backend, and e2fsck -fn
//!   in the appliance finds every filesystem clean;
//! - sysprep (`all` but fs-uuids, a new hostname) of that fixture,
//!   native on one qcow2 copy and libguestfs on another: the same changes reported,
//!   the same resulting listing, and every ext filesystem of the native result (LVs
//!   copied out through the native mapping) e2fsck -fn clean;
//! - the centos7 and rocky9 sysprep fixtures (XFS on LVM): the PV, VG and LV UUIDs
//!   listed natively equal what libguestfs recorded when they were built, and
//!   inspection says the native backend cannot read their root (so sysprep falls
//!   back) instead of claiming there is no OS.

mod native_support;
mod sysprep_support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use imgferry::guest::libguestfs::{Access, Session};
use imgferry::guest::native::NativeGuest;
use imgferry::guest::{BlockId, BlockKind, GuestError, GuestFs, GuestFsExt, OsInfo};
use imgferry::pipeline::backend::{run_on_image, BackendChoice, BackendRun};
use imgferry::report::SilentReporter;
use imgferry::sysprep::{self, Hostname, Options, Words};
use native_support::{fixture_dir, open_disk, to_raw};
use serde_json::Value;
use sysprep_support::{differences, listing, Listing};

/// The cached lvm-ext4 fixture and its facts, built if needed.
fn lvm_fixture() -> (PathBuf, Value) {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(repo.join("scripts/make-lvm-fixture"))
        .output()
        .expect("cannot run scripts/make-lvm-fixture");
    assert!(
        out.status.success(),
        "scripts/make-lvm-fixture failed ({}); it needs scripts/install-deps --guestfs:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = fixture_dir();
    let facts = std::fs::read_to_string(dir.join("lvm-ext4.json")).unwrap();
    (
        dir.join("lvm-ext4.qcow2"),
        serde_json::from_str(&facts).unwrap(),
    )
}

fn ids_set(ids: &[BlockId]) -> BTreeSet<String> {
    ids.iter()
        .map(|id| format!("{:?} {} {}", id.kind, id.device, id.uuid))
        .collect()
}

/// The native guest's inspection and listing of its one OS.
fn native_view(image: &Path) -> (OsInfo, Listing) {
    let mut guest = NativeGuest::open(open_disk(image), image).unwrap();
    let mut roots = guest.inspect().unwrap();
    assert_eq!(roots.len(), 1, "{roots:?}");
    let os = roots.remove(0);
    let skipped = guest.mount_os(&os).unwrap();
    assert!(skipped.is_empty(), "{skipped:?}");
    let listing = listing(&mut guest);
    (os, listing)
}

#[test]
fn lvs_are_found_as_libguestfs_lists_them() {
    let (image, facts) = lvm_fixture();
    let guest = NativeGuest::open(open_disk(&image), &image).unwrap();
    let found = guest.discovered();
    let lvs: Vec<&str> = found
        .volume_groups
        .iter()
        .flat_map(|vg| &vg.lvs)
        .map(|lv| lv.device.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let expected: Vec<&str> = facts["lvm"]["lvs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(lvs, expected);
    for (device, size) in facts["lvm"]["sizes"].as_object().unwrap() {
        let lv = found
            .volume_groups
            .iter()
            .flat_map(|vg| &vg.lvs)
            .find(|lv| lv.device == *device)
            .unwrap();
        let volume = lv.volume.as_ref().unwrap();
        assert_eq!(volume.len(), size.as_u64().unwrap(), "{device}");
        // data-1 was extended past filler: two runs on the disk, not adjacent.
        let runs = volume.disk_ranges(0, volume.len(), "test").unwrap();
        let segments = facts["lvm"]["segments"][device.rsplit('/').next().unwrap()]
            .as_u64()
            .unwrap();
        assert_eq!(runs.len() as u64, segments, "{device}: {runs:?}");
    }
    let filesystems: BTreeSet<&str> = found
        .filesystems
        .iter()
        .map(|f| f.device.as_str())
        .collect();
    assert_eq!(
        filesystems,
        BTreeSet::from(["/dev/sda1", "/dev/centos/root", "/dev/centos/data-1"])
    );
    // filler holds zeros: it is reported, not silently dropped.
    assert!(found
        .unreadable
        .iter()
        .any(|u| u.device == "/dev/centos/filler"));
}

/// The native edits, on the root LV and on both segments of data-1.
fn edit_natively(image: &Path) {
    let mut guest = NativeGuest::open(open_disk(image), image).unwrap();
    let os = guest.inspect().unwrap().remove(0);
    guest.mount_os(&os).unwrap();
    let path = |guest: &mut NativeGuest, p: &str| {
        guest
            .resolve(p, imgferry::guest::Follow::Final)
            .unwrap_or_else(|e| panic!("{p}: {e}"))
    };
    let hostname = path(&mut guest, "/etc/hostname");
    guest.write(&hostname, b"edited-by-native\n").unwrap();
    let history = path(&mut guest, "/root/.bash_history");
    guest.remove_file(&history).unwrap();
    let messages = path(&mut guest, "/var/log/messages");
    guest.truncate(&messages).unwrap();
    // Blocks in every group of data-1 (bitmaps of groups 1 and 2 are in segment 2).
    let big = path(&mut guest, "/srv/big.bin");
    guest.remove_file(&big).unwrap();
    let assets = path(&mut guest, "/srv/www/static");
    guest.remove_tree(&assets).unwrap();
    let index = path(&mut guest, "/srv/www/index.html");
    guest.write(&index, b"<h1>edited</h1>\n").unwrap();
    // Some of the writes land in data-1's second segment, past filler.
    let data = guest
        .discovered()
        .volume_groups
        .iter()
        .flat_map(|vg| &vg.lvs)
        .find(|lv| lv.device == "/dev/centos/data-1")
        .and_then(|lv| lv.volume.as_ref().ok())
        .unwrap();
    let runs = data.disk_ranges(0, data.len(), "test").unwrap();
    let (second, len) = runs[1];
    let writes = guest.pending_writes().unwrap();
    assert!(
        writes
            .data
            .iter()
            .any(|(at, _)| *at >= second && *at < second + len),
        "no write in {runs:?}"
    );
    // lvm-uuids: new PV and VG UUIDs, listed at once, committed with the edits.
    let old_ids = guest.block_ids().unwrap();
    guest.renew_lvm_uuids().unwrap();
    let new_ids = guest.block_ids().unwrap();
    assert_eq!(old_ids.len(), new_ids.len());
    for (old, new) in old_ids.iter().zip(&new_ids) {
        let lvm = matches!(old.kind, BlockKind::PhysicalVolume | BlockKind::VolumeGroup);
        assert_eq!((&old.kind, &old.device), (&new.kind, &new.device));
        assert_eq!(old.uuid != new.uuid, lvm, "{old:?} -> {new:?}");
    }
    let report = guest.commit().unwrap();
    assert!(report.guest_bytes > 0, "{report:?}");
}

#[test]
fn native_reads_and_edits_on_lvs_match_libguestfs() {
    let (fixture, facts) = lvm_fixture();
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("lvm-ext4.raw");
    to_raw(&fixture, &image);

    let (os_before, before) = native_view(&image);
    assert_eq!(os_before.root, "/dev/centos/root");
    assert_eq!(os_before.distro, "centos");
    assert_eq!(os_before.hostname, facts["expect"]["hostname"]);
    let mounts: BTreeSet<(&str, &str)> = os_before
        .mountpoints
        .iter()
        .map(|(m, d)| (m.as_str(), d.as_str()))
        .collect();
    assert_eq!(
        mounts,
        BTreeSet::from([
            ("/", "/dev/centos/root"),
            ("/boot", "/dev/sda1"),
            ("/srv", "/dev/centos/data-1"),
        ])
    );
    assert!(before.contains_key("/srv/big.bin"), "{before:?}");

    edit_natively(&image);
    let (os_after, after) = native_view(&image);
    assert_eq!(os_after.hostname, "edited-by-native");
    let changed = differences(&before, &after);
    let expected: BTreeSet<String> = [
        "/etc/hostname",
        "/root/.bash_history",
        "/var/log/messages",
        "/srv/big.bin",
        "/srv/www/static",
        "/srv/www/index.html",
    ]
    .iter()
    .map(|p| p.to_string())
    .chain((1..=30).map(|i| format!("/srv/www/static/asset-{i}.txt")))
    .collect();
    assert_eq!(changed, expected);
    let native_ids = {
        let mut guest = NativeGuest::open(open_disk(&image), &image).unwrap();
        guest.block_ids().unwrap()
    };

    // One appliance launch: everything libguestfs says about the edited image.
    let mut session = Session::open(&image, Access::DryRun).unwrap();
    let libguestfs_ids = session.block_ids().unwrap();
    let mut roots = session.inspect().unwrap();
    assert_eq!(roots.len(), 1, "{roots:?}");
    let os = roots.remove(0);
    session.mount_os(&os).unwrap();
    let libguestfs_listing = listing(&mut session);
    let checks = session.check_filesystems().unwrap();
    drop(session);

    assert_eq!(os.root, os_after.root);
    assert_eq!(os.distro, os_after.distro);
    assert_eq!(os.hostname, os_after.hostname);
    let mut libguestfs_mounts = os.mountpoints.clone();
    let mut native_mounts = os_after.mountpoints.clone();
    libguestfs_mounts.sort();
    native_mounts.sort();
    assert_eq!(native_mounts, libguestfs_mounts);
    assert_eq!(
        differences(&after, &libguestfs_listing),
        BTreeSet::new(),
        "the native and libguestfs listings differ"
    );
    assert_eq!(ids_set(&native_ids), ids_set(&libguestfs_ids));
    // LVM in the appliance reads the renewed PV and VG (and activates its LVs).
    assert!(native_ids
        .iter()
        .any(|id| id.kind == BlockKind::PhysicalVolume
            && id.device == "/dev/sda2"
            && id.uuid.len() == 38
            && id.uuid != facts["lvm"]["pv_uuid"]));
    assert!(native_ids.iter().any(|id| id.kind == BlockKind::VolumeGroup
        && id.device == "centos"
        && id.uuid.len() == 38
        && id.uuid != facts["lvm"]["vg_uuid"]));
    let checked: BTreeSet<&str> = checks
        .iter()
        .filter(|c| c.clean.is_some())
        .map(|c| c.device.as_str())
        .collect();
    assert_eq!(
        checked,
        BTreeSet::from(["/dev/sda1", "/dev/centos/root", "/dev/centos/data-1"])
    );
    for check in &checks {
        assert_ne!(check.clean, Some(false), "{check:?}");
    }
}

#[test]
fn xfs_on_lvm_fixtures_list_their_uuids_and_fall_back_for_inspection() {
    for name in ["centos7", "rocky9"] {
        let fixture = sysprep_support::fixture(name);
        let fact = |section: &str, key: &str| fixture.facts[section][key].as_str().unwrap_or("");
        let vg = fact("lvm", "vg").to_owned();
        let mut guest = NativeGuest::open(open_disk(&fixture.image), &fixture.image).unwrap();
        let ids = guest.block_ids().unwrap();
        let has = |kind: BlockKind, device: &str, uuid: &str| {
            ids.iter()
                .any(|id| id.kind == kind && id.device == device && id.uuid == uuid)
        };
        let pv = if name == "centos7" {
            "/dev/sda2"
        } else {
            "/dev/sda3"
        };
        assert!(
            has(BlockKind::PhysicalVolume, pv, fact("lvm", "pv_uuid")),
            "{name}: {ids:?}"
        );
        assert!(
            has(BlockKind::VolumeGroup, &vg, fact("lvm", "vg_uuid")),
            "{name}: {ids:?}"
        );
        let xfs = || BlockKind::Filesystem {
            fstype: "xfs".to_owned(),
        };
        let root = format!("/dev/{vg}/root");
        assert!(
            has(xfs(), &root, fact("filesystems", "root_uuid")),
            "{name}: {ids:?}"
        );
        if name == "centos7" {
            let swap = BlockKind::Filesystem {
                fstype: "swap".to_owned(),
            };
            assert!(
                has(swap, "/dev/rhel/swap", fact("filesystems", "swap_uuid")),
                "{ids:?}"
            );
        }
        guest.require_whole_guest();
        let err = guest.inspect().unwrap_err();
        assert!(
            matches!(err, GuestError::NativeUnsupported { .. }) && err.to_string().contains(&root),
            "{name}: {err}"
        );
    }
}

fn sysprep_with(image: &Path, backend: BackendChoice) -> BackendRun {
    let options = Options {
        operations: sysprep::select(&[Words::Operations("all,-fs-uuids".into())]).unwrap(),
        hostname: Some(Hostname::parse("clone-07.example.net").unwrap()),
        ..Options::default()
    };
    run_on_image(image, &options, backend, &SilentReporter)
        .unwrap_or_else(|e| panic!("sysprep with {backend:?}: {e}"))
}

fn change_lines(run: &BackendRun) -> BTreeSet<String> {
    run.reports
        .iter()
        .flat_map(|r| &r.changes)
        .map(|c| format!("{} {} [{}]", c.action.name(), c.path, c.operation))
        .collect()
}

#[test]
fn native_sysprep_of_a_root_on_lvm_equals_libguestfs() {
    let (fixture, _) = lvm_fixture();
    let dir = tempfile::tempdir().unwrap();
    let native = dir.path().join("native.qcow2");
    let appliance = dir.path().join("appliance.qcow2");
    std::fs::copy(&fixture, &native).unwrap();
    std::fs::copy(&fixture, &appliance).unwrap();

    let ran = sysprep_with(&native, BackendChoice::Native);
    assert_eq!(ran.backend, "native");
    assert!(ran.committed && ran.changes() >= 5, "{}", ran.changes());
    let reference = sysprep_with(&appliance, BackendChoice::Libguestfs);
    assert_eq!(change_lines(&ran), change_lines(&reference));
    let (os, native_result) = native_view(&native);
    assert_eq!(os.hostname, "clone-07.example.net");
    let (_, libguestfs_result) = native_view(&appliance);
    assert_eq!(
        differences(&native_result, &libguestfs_result),
        BTreeSet::new(),
        "the native and libguestfs results differ"
    );

    // Every ext filesystem of the native result, copied out through the LV mapping
    // (checked against libguestfs's device-mapper above), checks clean.
    let guest = NativeGuest::open(open_disk(&native), &native).unwrap();
    let found = &guest.discovered().filesystems;
    assert_eq!(found.len(), 3);
    for filesystem in found {
        let volume = filesystem.fs.overlay().volume();
        let copy = dir.path().join("fs.img");
        let mut out = std::fs::File::create(&copy).unwrap();
        let mut at = 0;
        while at < volume.len() {
            let chunk = (volume.len() - at).min(1 << 20);
            let data = volume.read_vec(at, chunk as usize, "test").unwrap();
            std::io::Write::write_all(&mut out, &data).unwrap();
            at += chunk;
        }
        drop(out);
        native_support::run("e2fsck", &["-fn", native_support::arg(&copy)]);
    }
}
