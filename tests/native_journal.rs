//! Native recovery (jbd2 replay, then the orphan list) against e2fsck's: in every
//! filesystem variant and a journal format each (v3 checksums with 64-bit tags, v2,
//! none with 32-bit tags), a finished filesystem with an orphan is
//! made stale by debugfs and given a journal that restores it, with a revoked block
//! and an uncommitted transaction of garbage around the real one
//! (`common::dirty_journal`). Recovered natively and by `e2fsck -fy` on two copies,
//! both must hold the finished tree, the native one `e2fsck -fn` clean. Then what
//! the native recovery refuses (a corrupt commit block, an orphan with links, v1
//! commit checksums) leaves nothing behind.

mod common;
mod native_support;

use std::path::Path;
use std::process::Command;

use common::dirty_journal::{debugfs, journal_back, make_orphan, Journaled};
use imgferry::guest::native::ext4::Ext4;
use imgferry::guest::native::NativeError;
use imgferry::guest::native::{commit, Volume};
use native_support::edit_oracle::{assert_fsck_clean, assert_same_tree, make_fs, tree, VARIANTS};
use native_support::edits::{pattern, seed_tree};
use native_support::{arg, open_disk};

/// What the stale state lacks or has extra, against the finished one; its copy of
/// the block starting with the journal's magic is zeroed, so the journal holds that
/// block, escaped.
const STALE: &str = "rm /etc/hostname\nrm /var/log/syslog\nrm /etc/ssh/sshd_config\n\
                     mkdir /var/stale-dir\nrmdir /var/cache/empty\nzap_block -f /var/magic 0\n";

/// A finished filesystem of `variant` with an orphan, and its dirty twin whose
/// journal uses `journal_options`.
fn dirty_pair(
    dir: &Path,
    variant: usize,
    journal_options: &str,
) -> (std::path::PathBuf, std::path::PathBuf, Journaled) {
    let variant = &VARIANTS[variant];
    let tree_root = dir.join("seed");
    seed_tree(&tree_root, variant.index_dirs);
    let finished = dir.join("finished.img");
    make_fs(&finished, &tree_root, 32 << 20, variant);
    let host = dir.join("open-file");
    std::fs::write(&host, pattern(30_000, 11)).unwrap();
    make_orphan(&finished, &host, "/var/log/open-file");
    let mut magic = 0xc03b_3998u32.to_be_bytes().to_vec();
    magic.extend(pattern(3000, 5));
    std::fs::write(&host, magic).unwrap();
    debugfs(
        &finished,
        &format!("write {} /var/magic\n", arg(&host)),
        true,
    );
    let dirty = dir.join("dirty.img");
    let journaled = journal_back(&finished, &dirty, STALE, "/data/keep", journal_options);
    (finished, dirty, journaled)
}

/// Recovers `image` natively and commits the result; returns the report.
fn recover_natively(image: &Path) -> imgferry::guest::native::ext4::journal::Recovery {
    let disk = open_disk(image);
    let mut fs = Ext4::open(Volume::whole(disk.clone())).unwrap();
    assert!(fs.needs_recovery());
    let report = fs
        .recover()
        .expect("recover")
        .expect("something to recover");
    assert!(!fs.needs_recovery());
    fs.self_check().expect("self-check after recovery");
    let writes = fs.overlay().disk_writes(disk.as_ref()).unwrap();
    drop(fs);
    drop(disk);
    commit::apply(image, &writes).unwrap();
    report
}

/// `e2fsck -fy`: replays, releases orphans and fixes what it finds (exit 0 or 1).
fn e2fsck_recover(image: &Path) {
    let out = Command::new("e2fsck")
        .args(["-fy", arg(image)])
        .output()
        .unwrap();
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "e2fsck -fy {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
}

fn check(variant: usize, journal_options: &str) {
    let name = format!("{} (jo {journal_options})", VARIANTS[variant].name);
    let dir = tempfile::tempdir().unwrap();
    let (finished, dirty, journaled) = dirty_pair(dir.path(), variant, journal_options);
    let want = tree(&finished);
    assert_ne!(
        tree(&dirty),
        want,
        "{name}: the stale state shows the finished tree"
    );

    let native = dir.path().join("native.img");
    std::fs::copy(&dirty, &native).unwrap();
    let report = recover_natively(&native);
    assert_eq!(report.transactions, 2, "{name}: {report:?}");
    assert_eq!(report.blocks, journaled.restored, "{name}: {report:?}");
    assert_eq!(report.revoked, 1, "{name}: {report:?}");
    assert_eq!(report.orphans, 1, "{name}: {report:?}");

    let reference = dir.path().join("e2fsck.img");
    std::fs::copy(&dirty, &reference).unwrap();
    e2fsck_recover(&reference);

    assert_fsck_clean(&native);
    assert_same_tree(
        &tree(&native),
        &tree(&reference),
        &format!("{name}: native vs e2fsck"),
    );
    assert_same_tree(
        &tree(&native),
        &want,
        &format!("{name}: native vs finished"),
    );
    let stats = debugfs(&native, "stats -h\n", false);
    assert!(
        !stats.contains("needs_recovery") && !stats.contains("First orphan inode"),
        "{name}: {stats}"
    );
    // Recovered once is recovered: nothing is left to do.
    let fs = Ext4::open(Volume::whole(open_disk(&native))).unwrap();
    assert!(!fs.needs_recovery() && fs.last_orphan().unwrap() == 0);
    // The revoked garbage and the uncommitted garbage stayed in the journal.
    let size = common::dirty_journal::block_size(&finished) as u64;
    for block in [journaled.revoked, journaled.uncommitted] {
        assert_eq!(
            fs.read_block(block, "test").unwrap(),
            std::fs::read(&finished).unwrap()
                [(block * size) as usize..((block + 1) * size) as usize],
            "{name}: block {block}"
        );
    }
}

#[test]
fn ext4_64bit_metadata_csum_with_v3_journal_checksums() {
    check(0, "-c");
}

#[test]
fn ext4_uninit_bg_without_journal_checksums() {
    check(1, "");
}

#[test]
fn ext4_1k_blocks_with_v2_journal_checksums() {
    check(2, "-c -v 2");
}

#[test]
fn ext3_indirect_with_32_bit_journal_tags() {
    check(3, "");
}

#[test]
fn ext4_htree_with_v3_journal_checksums() {
    check(4, "-c");
}

/// `image` unchanged by a refused recovery, which names `why`.
fn assert_refused(image: &Path, why: &str) {
    let before = std::fs::read(image).unwrap();
    let mut fs = Ext4::open(Volume::whole(open_disk(image))).unwrap();
    let err = fs.recover().unwrap_err();
    assert!(
        matches!(err, NativeError::Unsupported { .. }) && err.to_string().contains(why),
        "{err}"
    );
    assert!(fs.overlay().is_empty(), "a refused recovery left edits");
    drop(fs);
    assert_eq!(std::fs::read(image).unwrap(), before);
}

#[test]
fn corrupt_commit_blocks_and_linked_orphans_are_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let (_, dirty, _) = dirty_pair(dir.path(), 0, "-c");
    // Flip a byte of the first commit block's commit time: its checksum fails, and
    // with no later commit to compare it is corruption, not a stale log.
    let logdump = debugfs(&dirty, "logdump\n", false);
    let commit_block: u64 = logdump
        .lines()
        .find(|l| l.contains("(commit block)"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("a commit block in logdump");
    let physical: u64 = debugfs(&dirty, &format!("bmap <8> {commit_block}\n"), false)
        .trim()
        .parse()
        .unwrap();
    let size = common::dirty_journal::block_size(&dirty) as u64;
    let mut bytes = std::fs::read(&dirty).unwrap();
    let at = (physical * size + 0x30 + 7) as usize;
    bytes[at] ^= 0xff;
    let corrupt = dir.path().join("corrupt.img");
    std::fs::write(&corrupt, bytes).unwrap();
    assert_refused(&corrupt, "fails its checksums");

    // An orphan that still has a name and links: an interrupted truncate.
    let linked = dir.path().join("linked.img");
    std::fs::copy(dir.path().join("finished.img"), &linked).unwrap();
    let number = common::dirty_journal::inode_of(&linked, "/etc/hostname");
    debugfs(&linked, &format!("ssv last_orphan {number}\n"), true);
    assert_refused(&linked, "interrupted truncate");

    // Without metadata_csum, debugfs (like the kernel's journal_checksum option)
    // checksums commits the v1 way, which is left to the kernel.
    let v1 = tempfile::tempdir().unwrap();
    let (_, dirty, _) = dirty_pair(v1.path(), 1, "-c");
    assert_refused(&dirty, "v1 commit-block checksums");
}
