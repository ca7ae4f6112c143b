//! The native backend's sysprep against the libguestfs backend's, on the same image
//! and operation words (`all` but the random fs/LVM UUIDs, a new hostname, alice kept):
//! the same changes are reported and the resulting guests list the same (path, kind,
//! mode, sha256 of every file); the native result is `e2fsck -fn` clean on every ext
//! filesystem and `qemu-img check` clean, and debugfs reads the edits back.
//!
//! The Debian fixture's root tree is also rebuilt with `mke2fs -d` as the layouts the
//! native writer must handle (1 KiB blocks with 64bit + metadata_csum, ext3 with
//! indirect blocks, an htree `/etc` of thousands of entries, an old-style ext4 without
//! metadata_csum): native sysprep on each must give the libguestfs result of the
//! fixture; so must a dirty twin of the tree whose latest state is only in the jbd2
//! journal, with an orphan, and the kernel's recovery and sysprep of it (libguestfs)
//! must give the same again. Also: a native dry run, a failure midway
//! and a guest or image the native backend refuses all leave the image byte-identical;
//! fs-uuids renews the ext4 UUID natively.

mod common;
mod sysprep_support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::dirty_journal::{journal_back, make_orphan};
use imgferry::guest::native::NativeGuest;
use imgferry::guest::GuestFs;
use imgferry::pipeline::backend::{run_on_image, BackendChoice, BackendRun};
use imgferry::report::SilentReporter;
use imgferry::sysprep::{self, Hostname, Options, UserAccounts, Words};
use sha2::{Digest, Sha256};
use sysprep_support::{
    differences, extract_tree, fixture, listing, sha256_file, FailingGuest, Listing,
};

const NEW_HOSTNAME: &str = "clone-02.example.net";
/// Everything but the operations whose result is random.
const WORDS: &str = "all,-fs-uuids,-lvm-uuids";
/// Files added to `/etc` of the htree layout.
const PADDING: usize = 3000;

fn options() -> Options {
    Options {
        operations: sysprep::select(&[Words::Operations(WORDS.to_owned())]).expect("words"),
        hostname: Some(Hostname::parse(NEW_HOSTNAME).unwrap()),
        delete: vec!["/var/lib/cern-private-cloud-addons".to_owned()],
        user_accounts: UserAccounts {
            keep: BTreeSet::from(["alice".to_owned()]),
            ..UserAccounts::default()
        },
        ..Options::default()
    }
}

fn sysprep_with(image: &Path, backend: BackendChoice) -> BackendRun {
    run_on_image(image, &options(), backend, &SilentReporter)
        .unwrap_or_else(|e| panic!("{}: sysprep with {backend:?}: {e}", image.display()))
}

/// `action path [operation]` of every change reported.
fn change_lines(run: &BackendRun) -> BTreeSet<String> {
    run.reports
        .iter()
        .flat_map(|r| &r.changes)
        .map(|c| format!("{} {} [{}]", c.action.name(), c.path, c.operation))
        .collect()
}

/// The listing of the image's single OS, read by the native reader (which matches
/// libguestfs on these fixtures: tests/native_guest.rs).
fn native_listing(image: &Path) -> Listing {
    let mut guest = NativeGuest::open_file(image).expect("open natively");
    let mut roots = guest.inspect().expect("inspect natively");
    assert_eq!(roots.len(), 1, "{}", image.display());
    guest.mount_os(&roots.remove(0)).expect("mount natively");
    listing(&mut guest)
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temp path")
}

/// `image` as a raw file next to it, and the e2fsprogs names (`FILE?offset=N`) of its
/// ext2/3/4 filesystems (the whole file when it has no partition table).
fn ext_filesystems(image: &Path) -> Vec<String> {
    let raw = image.with_extension("raw");
    run(
        "qemu-img",
        &["convert", "-O", "raw", path_str(image), path_str(&raw)],
    );
    let table = Command::new("sfdisk")
        .args(["-J", path_str(&raw)])
        .output()
        .expect("sfdisk");
    let starts: Vec<u64> = if table.status.success() {
        let json: serde_json::Value = serde_json::from_slice(&table.stdout).expect("sfdisk -J");
        json["partitiontable"]["partitions"]
            .as_array()
            .expect("partitions")
            .iter()
            .map(|p| p["start"].as_u64().unwrap() * 512)
            .collect()
    } else {
        vec![0]
    };
    starts
        .into_iter()
        .filter(|start| {
            let out = Command::new("blkid")
                .args(["-p", "-o", "value", "-s", "TYPE", "-O"])
                .arg(start.to_string())
                .arg(&raw)
                .output()
                .expect("blkid");
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .starts_with("ext")
        })
        .map(|start| format!("{}?offset={start}", raw.display()))
        .collect()
}

/// Every ext filesystem of `image` checks clean with `e2fsck -fn`, and `hostname` is in
/// the one holding `/etc/hostname` as debugfs reads it. The qcow2 checks clean too.
fn assert_clean_with_hostname(image: &Path, hostname: &str) {
    if image.extension().is_some_and(|e| e == "qcow2") {
        common::assert_qemu_check_clean(image);
    }
    let filesystems = ext_filesystems(image);
    assert!(
        !filesystems.is_empty(),
        "{}: no ext filesystem",
        image.display()
    );
    let mut seen = false;
    for fs in &filesystems {
        run("e2fsck", &["-fn", fs]);
        let out = Command::new("debugfs")
            .args(["-R", "cat /etc/hostname", fs])
            .output()
            .expect("debugfs");
        seen |= String::from_utf8_lossy(&out.stdout) == format!("{hostname}\n");
    }
    assert!(
        seen,
        "{}: debugfs does not read the new hostname",
        image.display()
    );
}

/// Runs sysprep natively on a copy of fixture `name` and with libguestfs on another;
/// returns the libguestfs result's listing, after asserting both agree.
fn native_equals_libguestfs(name: &'static str, dir: &Path) -> (BackendRun, Listing) {
    let fixture = fixture(name);
    let native = fixture.standalone_copy(dir, "native");
    let appliance = fixture.standalone_copy(dir, "appliance");
    let before = native_listing(&native);
    let ran = sysprep_with(&native, BackendChoice::Native);
    assert_eq!(ran.backend, "native");
    assert!(
        ran.committed && ran.changes() > 20,
        "{name}: {}",
        ran.changes()
    );
    let reference = sysprep_with(&appliance, BackendChoice::Libguestfs);
    assert_eq!(reference.backend, "libguestfs");
    assert_eq!(
        change_lines(&ran),
        change_lines(&reference),
        "{name}: reported changes"
    );
    let after = native_listing(&native);
    let expected = native_listing(&appliance);
    assert!(
        !differences(&before, &after).is_empty(),
        "{name}: nothing changed"
    );
    assert_eq!(
        differences(&after, &expected),
        BTreeSet::new(),
        "{name}: the native and libguestfs results differ in these paths"
    );
    assert_clean_with_hostname(&native, NEW_HOSTNAME);
    (reference, expected)
}

#[test]
fn ubuntu_gpt_with_an_esp_native_equals_libguestfs() {
    let dir = common::tempdir();
    native_equals_libguestfs("ubuntu", dir.path());
}

/// A whole-disk filesystem image made by `mke2fs -d tree` with `options`.
fn layout(dir: &Path, name: &str, tree: &Path, options: &[&str]) -> PathBuf {
    let image = dir.join(format!("{name}.img"));
    let mut args = vec!["-q", "-F", "-L", "root"];
    args.extend(options);
    args.extend(["-d", path_str(tree), path_str(&image), "96M"]);
    run("mke2fs", &args);
    image
}

fn padding_name(index: usize) -> String {
    format!("/etc/imgferry-pad-{index:05}")
}

#[test]
fn debian_native_equals_libguestfs_on_every_ext_layout() {
    let dir = common::tempdir();
    let (reference, expected) = native_equals_libguestfs("debian", dir.path());

    let tree = dir.path().join("tree");
    extract_tree(&fixture("debian").image, &tree);
    let htree_tree = dir.path().join("tree-htree");
    run("cp", &["-a", path_str(&tree), path_str(&htree_tree)]);
    for index in 0..PADDING {
        let name = padding_name(index);
        std::fs::write(htree_tree.join(name.trim_start_matches('/')), b"pad\n").unwrap();
    }
    let layouts = [
        layout(
            dir.path(),
            "ext4-1k-64bit-csum",
            &tree,
            &["-t", "ext4", "-b", "1024", "-O", "64bit,metadata_csum"],
        ),
        layout(dir.path(), "ext3-indirect", &tree, &["-t", "ext3"]),
        layout(
            dir.path(),
            "ext4-no-csum",
            &tree,
            &[
                "-t",
                "ext4",
                "-I",
                "128",
                "-O",
                "^64bit,^metadata_csum,uninit_bg",
            ],
        ),
        {
            let image = layout(dir.path(), "ext4-htree-etc", &htree_tree, &["-t", "ext4"]);
            // mke2fs -d writes linear directories; e2fsck -D indexes them (exit 1:
            // "file system was modified").
            let status = Command::new("e2fsck")
                .args(["-fyD", path_str(&image)])
                .output()
                .expect("e2fsck -D")
                .status;
            assert!(
                matches!(status.code(), Some(0 | 1)),
                "e2fsck -fyD: {status}"
            );
            let htree = run("debugfs", &["-R", "htree /etc", path_str(&image)]);
            assert!(htree.contains("Number of entries"), "/etc is not an htree");
            image
        },
    ];
    let pad_sha = hex(&Sha256::digest(b"pad\n"));
    for image in &layouts {
        let name = image.file_name().unwrap().to_string_lossy().into_owned();
        let ran = sysprep_with(image, BackendChoice::Native);
        assert_eq!(ran.backend, "native", "{name}");
        assert_eq!(
            change_lines(&ran),
            change_lines(&reference),
            "{name}: reported changes"
        );
        let mut want = expected.clone();
        if name.starts_with("ext4-htree") {
            for index in 0..PADDING {
                want.insert(padding_name(index), format!("file 644 {pad_sha}"));
            }
        }
        assert_eq!(
            differences(&native_listing(image), &want),
            BTreeSet::new(),
            "{name}: differs from the libguestfs result in these paths"
        );
        assert_clean_with_hostname(image, NEW_HOSTNAME);
    }

    // A snapshot of a running guest: the latest metadata only in the journal (v3
    // checksums, around it a revoked block and an uncommitted transaction) and a file
    // deleted while open on the orphan list. Without replay the stale state has no
    // os-release (no OS found) and no hostname. The kernel (libguestfs) recovers a
    // second copy: both results must be equal.
    let finished = layout(dir.path(), "journal-finished", &tree, &["-t", "ext4"]);
    let host = dir.path().join("open-file");
    std::fs::write(&host, vec![7u8; 20_000]).unwrap();
    make_orphan(&finished, &host, "/var/open-file");
    let dirty = dir.path().join("ext4-dirty-journal.img");
    let stale = "rm /etc/hostname\nrm /usr/lib/os-release\nmkdir /var/stale\n";
    journal_back(&finished, &dirty, stale, "/etc/passwd", "-c");
    let appliance = dir.path().join("ext4-dirty-journal-appliance.img");
    std::fs::copy(&dirty, &appliance).unwrap();
    // A dry run says what recovery took, and writes nothing, not even the recovery.
    let sha = sha256_file(&dirty);
    let out = common::run_ok(
        common::imgferry()
            .args(["--json", "sysprep", "--backend", "native", "--dry-run"])
            .arg(&dirty),
    );
    let recovered: serde_json::Value = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["kind"] == "sysprep.recovered")
        .unwrap_or_else(|| panic!("no sysprep.recovered event: {out}"));
    assert_eq!(recovered["transactions"], 2, "{recovered}");
    assert_eq!(recovered["revoked"], 1, "{recovered}");
    assert_eq!(recovered["orphans"], 1, "{recovered}");
    assert_eq!(sha256_file(&dirty), sha, "a dry run wrote the recovery");
    let ran = sysprep_with(&dirty, BackendChoice::Native);
    assert_eq!(ran.backend, "native");
    let kernel = sysprep_with(&appliance, BackendChoice::Libguestfs);
    assert_eq!(
        change_lines(&ran),
        change_lines(&kernel),
        "dirty journal: reported changes"
    );
    let recovered = native_listing(&dirty);
    assert_eq!(
        differences(&recovered, &native_listing(&appliance)),
        BTreeSet::new(),
        "dirty journal: native and libguestfs differ in these paths"
    );
    assert_eq!(
        differences(&recovered, &expected),
        BTreeSet::new(),
        "dirty journal: differs from the clean fixture's result in these paths"
    );
    assert_clean_with_hostname(&dirty, NEW_HOSTNAME);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn native_dry_run_failures_and_refusals_leave_the_image_byte_identical() {
    let dir = common::tempdir();
    let debian = fixture("debian");
    let image = debian.standalone_copy(dir.path(), "safety");
    let before = sha256_file(&image);

    let out = common::run_ok(
        common::imgferry()
            .args(["--json", "sysprep", "--backend", "native", "--dry-run"])
            .arg(&image),
    );
    let result: serde_json::Value =
        serde_json::from_str(out.lines().last().expect("a result line")).unwrap();
    assert_eq!(result["backend"], "native", "{result}");
    assert_eq!(result["accelerator"], "none", "{result}");
    assert_eq!(result["committed"], false, "{result}");
    assert!(result["changes"].as_u64().unwrap() > 20, "{result}");
    assert_eq!(
        sha256_file(&image),
        before,
        "a native dry run changed the image"
    );

    // The 20th change fails: the 19 before it were only in memory.
    {
        let mut guest = NativeGuest::open_file(&image).unwrap();
        let mut failing = FailingGuest {
            inner: &mut guest,
            changes_left: 20,
        };
        let err = sysprep::run(&mut failing, &options(), &SilentReporter).unwrap_err();
        assert!(err.to_string().contains("injected failure"), "{err}");
    }
    assert_eq!(
        sha256_file(&image),
        before,
        "a failed native run changed the image"
    );

    // What the native backend does not handle: exit 1 saying why, nothing changed.
    let xfs_lvm = fixture("centos7").standalone_copy(dir.path(), "refused");
    let with_backing = debian.copy(dir.path(), "backing");
    // A crashed VM's filesystem whose recovery the native backend does not finish: an
    // orphan that still has links (an interrupted truncate).
    let dirty = debian.standalone_copy(dir.path(), "dirty");
    let root = ext_filesystems(&dirty).remove(0);
    let stat = run("debugfs", &["-R", "stat /etc/hostname", &root]);
    let hostname_inode = stat.split_whitespace().nth(1).expect("stat: Inode: N");
    run(
        "debugfs",
        &[
            "-w",
            "-R",
            &format!("ssv last_orphan {hostname_inode}"),
            &root,
        ],
    );
    let dirty = dirty.with_extension("raw");
    for (refused, why) in [
        (&xfs_lvm, "no OS root on an ext2/3/4 filesystem"),
        (&with_backing, "backing file"),
        (&dirty, "interrupted truncate"),
    ] {
        let sha = sha256_file(refused);
        let out = common::run(
            common::imgferry()
                .args(["sysprep", "--backend", "native"])
                .arg(refused),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(why) && stderr.contains("--backend"),
            "{stderr}"
        );
        assert_eq!(sha256_file(refused), sha, "{}", refused.display());
    }
}

#[test]
fn native_fs_uuids_renews_the_ext4_uuid_and_the_fstab_reference() {
    let dir = common::tempdir();
    let options = Options {
        operations: sysprep::select(&[Words::Enable("fs-uuids".to_owned())]).unwrap(),
        ..Options::default()
    };
    // With metadata_csum and no stored seed every checksum depends on the UUID: the
    // native backend leaves that to libguestfs (tune2fs), changing nothing.
    let debian = fixture("debian");
    let seeded = debian.standalone_copy(dir.path(), "csum");
    let sha = sha256_file(&seeded);
    let err = run_on_image(&seeded, &options, BackendChoice::Native, &SilentReporter).unwrap_err();
    assert!(err.is_native_limitation(), "{err}");
    assert_eq!(sha256_file(&seeded), sha);

    // Without metadata_csum: the fixture's tree and root UUID on a whole-disk ext4.
    let root = &ext_filesystems(&seeded)[0];
    let (raw, offset) = root.split_once("?offset=").unwrap();
    let blkid = ["-p", "-o", "value", "-s", "UUID", "-O", offset, raw];
    let old = run("blkid", &blkid).trim().to_owned();
    let tree = dir.path().join("tree");
    extract_tree(&debian.image, &tree);
    let image = layout(
        dir.path(),
        "ext4-no-csum",
        &tree,
        &["-t", "ext4", "-O", "^metadata_csum", "-U", &old],
    );
    let ran = run_on_image(&image, &options, BackendChoice::Native, &SilentReporter).unwrap();
    let changes: Vec<_> = ran.reports.iter().flat_map(|r| &r.changes).collect();
    let renewed = changes
        .iter()
        .find(|c| c.path == "/dev/sda")
        .unwrap_or_else(|| panic!("no new UUID for /dev/sda: {changes:?}"));
    assert_eq!(renewed.removed_lines, [old.as_str()]);
    let new = &renewed.added_lines[0];
    assert_ne!(new, &old);
    let image_str = path_str(&image);
    let uuid = run("blkid", &["-p", "-o", "value", "-s", "UUID", image_str]);
    assert_eq!(uuid.trim(), new.as_str());
    run("e2fsck", &["-fn", image_str]);
    let fstab = run("debugfs", &["-R", "cat /etc/fstab", image_str]);
    assert!(fstab.contains(new.as_str()), "{fstab}");
    assert!(!fstab.contains(old.as_str()), "{fstab}");
}
