//! Native ext4 edits against debugfs: on filesystems made by `mke2fs -d` in every
//! feature variant edits must keep consistent (64bit + metadata_csum, uninit_bg
//! without metadata_csum, 1 KiB blocks, ext3 with indirect blocks, an htree directory
//! of thousands of entries), the edits sysprep makes — remove files (small, large,
//! symlinks, one name of a hard link), remove directory trees, truncate, rewrite,
//! create — are made natively on one copy and by debugfs (`rm`, `rmdir`, `punch` +
//! `sif size 0`, `write`) on another. Both must pass `e2fsck -fn`, the native reader
//! must agree with debugfs on the edited image, and both trees must be equal.

mod native_support;

use imgferry::guest::native::ext4::inode::flags;
use imgferry::guest::native::ext4::Ext4;
use imgferry::guest::native::Volume;
use native_support::edit_oracle::{
    assert_fsck_clean, assert_same_tree, debugfs_write, edit_natively, make_fs, tree, tree_checked,
    Variant, VARIANTS,
};
use native_support::edits::{
    apply_native, debugfs_script, pattern, seed_tree, Edit, BIG_DIR_FILES,
};
use native_support::open_disk;

fn edits(big_dir: bool) -> Vec<Edit> {
    let mut edits = vec![
        Edit::Remove("/etc/ssh/ssh_host_rsa_key".into()),
        Edit::Remove("/etc/ssh/ssh_host_ed25519_key.pub".into()),
        Edit::Remove("/var/log/big.log".into()),
        Edit::Remove("/etc/slow-link".into()),
        Edit::Remove("/etc/fast-link".into()),
        Edit::Remove("/data/keep-too".into()),
        Edit::Truncate("/etc/machine-id".into()),
        Edit::Truncate("/var/log/syslog".into()),
        Edit::Write("/etc/hostname".into(), b"new-host\n".to_vec(), 0o600),
        Edit::Write("/etc/ssh/sshd_config".into(), pattern(20_000, 9), 0o644),
        Edit::Create("/etc/created".into(), b"made natively\n".to_vec()),
        Edit::Create("/var/created-larger".into(), pattern(13_000, 7)),
        Edit::RemoveTree("/var/log/journal".into()),
        Edit::RemoveTree("/var/cache".into()),
    ];
    if big_dir {
        for i in (0..BIG_DIR_FILES).step_by(29) {
            let name = format!("/etc/big/entry-with-a-longish-name-{i:05}");
            edits.push(Edit::Write(name, b"rewritten\n".to_vec(), 0o644));
        }
        for i in 0..60 {
            edits.push(Edit::Create(
                format!("/etc/big/new-{i}"),
                format!("{i}\n").into_bytes(),
            ));
        }
    }
    edits
}

fn check_variant(variant: &Variant) {
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("seed");
    seed_tree(&seed, variant.index_dirs);
    let native = dir.path().join("native.img");
    make_fs(&native, &seed, 32 << 20, variant);
    let reference = dir.path().join("debugfs.img");
    std::fs::copy(&native, &reference).unwrap();
    let edits = edits(variant.index_dirs);
    let before = tree(&native);
    let writes = edit_natively(&native, |fs| apply_native(fs, &edits));
    assert!(writes > 0, "{}", variant.name);
    let host = dir.path().join("host");
    std::fs::create_dir(&host).unwrap();
    debugfs_write(
        &reference,
        &debugfs_script(&edits, &before, &host),
        dir.path(),
    );
    assert_fsck_clean(&native);
    assert_fsck_clean(&reference);
    let scratch = dir.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    let edited = tree_checked(&native, &scratch);
    assert_same_tree(&edited, &tree(&reference), variant.name);
    assert!(!edited.contains_key("/var/cache") && edited.contains_key("/etc/created"));
    assert_eq!(edited["/etc/machine-id"].1, 0);
    assert_eq!(edited["/data/keep"].0 & 0o777, 0o644);
    if variant.index_dirs {
        let fs = Ext4::open(Volume::whole(open_disk(&native))).unwrap();
        let big = fs.lookup(b"/etc/big").unwrap().unwrap();
        assert!(big.has_flag(flags::INDEX), "/etc/big is still an htree");
        assert_eq!(fs.read_dir(&big).unwrap().len(), BIG_DIR_FILES + 60);
    }
}

#[test]
fn ext4_64bit_metadata_csum() {
    check_variant(&VARIANTS[0]);
}

#[test]
fn ext4_uninit_bg_without_metadata_csum() {
    check_variant(&VARIANTS[1]);
}

#[test]
fn ext4_1k_blocks() {
    check_variant(&VARIANTS[2]);
}

#[test]
fn ext3_indirect_blocks() {
    check_variant(&VARIANTS[3]);
}

#[test]
fn ext4_htree_directory_with_thousands_of_entries() {
    check_variant(&VARIANTS[4]);
}
