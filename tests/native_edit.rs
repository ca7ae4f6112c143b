//! Native ext4 edits against debugfs: on filesystems made by `mke2fs -d` in every
//! feature variant edits must keep consistent (64bit + metadata_csum, uninit_bg
//! without metadata_csum, 1 KiB blocks, ext3 with indirect blocks, an htree directory
//! of thousands of entries), the edits sysprep makes — remove files (small, large,
//! symlinks, one name of a hard link), remove directory trees, truncate, rewrite,
//! create — are made natively on one copy and by debugfs (`rm`, `rmdir`, `punch` +
//! `sif size 0`, `write`) on another. Both must pass `e2fsck -fn`, the native reader
//! must agree with debugfs on the edited image, and both trees must be equal.

mod native_support;

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use imgferry::guest::native::ext4::inode::flags;
use imgferry::guest::native::ext4::Ext4;
use imgferry::guest::native::Volume;
use native_support::edit_oracle::{
    assert_fsck_clean, assert_same_tree, debugfs_write, edit_natively, make_fs, tree, tree_checked,
    Variant, VARIANTS,
};
use native_support::open_disk;

/// Names in the directory that becomes an htree in the htree variant.
const BIG_DIR_FILES: usize = 3000;

fn pattern(len: usize, salt: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251 + salt) as u8).collect()
}

fn seed_tree(root: &Path, big_dir: bool) {
    let write = |rel: &str, data: &[u8]| {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    };
    write("etc/hostname", b"prod-01\n");
    write("etc/machine-id", b"0123456789abcdef0123456789abcdef\n");
    for key in ["rsa", "ecdsa", "ed25519"] {
        write(&format!("etc/ssh/ssh_host_{key}_key"), &pattern(1700, 1));
        write(&format!("etc/ssh/ssh_host_{key}_key.pub"), &pattern(400, 2));
    }
    write("etc/ssh/sshd_config", b"PermitRootLogin no\n");
    write("var/log/big.log", &pattern(300_000, 3));
    write("var/log/syslog", &pattern(5000, 4));
    for i in 0..40 {
        write(
            &format!("var/log/journal/0123/system@{i:03}.journal"),
            &pattern(3000 + i * 100, i),
        );
    }
    write("var/cache/apt/pkgcache.bin", &pattern(70_000, 5));
    write("var/cache/apt/archives/partial/x", b"x");
    std::fs::create_dir_all(root.join("var/cache/empty")).unwrap();
    symlink("../log/syslog", root.join("var/cache/link")).unwrap();
    symlink(
        "/".to_owned() + &"long/".repeat(30),
        root.join("etc/slow-link"),
    )
    .unwrap();
    symlink("hostname", root.join("etc/fast-link")).unwrap();
    write("data/keep", b"kept\n");
    std::fs::hard_link(root.join("data/keep"), root.join("data/keep-too")).unwrap();
    std::fs::set_permissions(
        root.join("etc/hostname"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    if big_dir {
        for i in 0..BIG_DIR_FILES {
            write(
                &format!("etc/big/entry-with-a-longish-name-{i:05}"),
                format!("{i}\n").as_bytes(),
            );
        }
    }
}

/// One edit, said both ways.
enum Edit {
    Remove(&'static str),
    RemoveTree(&'static str),
    Truncate(&'static str),
    /// Path, new content, the file's mode (debugfs recreates it from a host file).
    Write(String, Vec<u8>, u32),
    Create(String, Vec<u8>),
}

fn edits(big_dir: bool) -> Vec<Edit> {
    let mut edits = vec![
        Edit::Remove("/etc/ssh/ssh_host_rsa_key"),
        Edit::Remove("/etc/ssh/ssh_host_ed25519_key.pub"),
        Edit::Remove("/var/log/big.log"),
        Edit::Remove("/etc/slow-link"),
        Edit::Remove("/etc/fast-link"),
        Edit::Remove("/data/keep-too"),
        Edit::Truncate("/etc/machine-id"),
        Edit::Truncate("/var/log/syslog"),
        Edit::Write("/etc/hostname".into(), b"new-host\n".to_vec(), 0o600),
        Edit::Write("/etc/ssh/sshd_config".into(), pattern(20_000, 9), 0o644),
        Edit::Create("/etc/created".into(), b"made natively\n".to_vec()),
        Edit::Create("/var/created-larger".into(), pattern(13_000, 7)),
        Edit::RemoveTree("/var/log/journal"),
        Edit::RemoveTree("/var/cache"),
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

fn apply_native(fs: &mut Ext4, edits: &[Edit]) {
    for edit in edits {
        let result = match edit {
            Edit::Remove(path) => fs.unlink(path.as_bytes()),
            Edit::RemoveTree(path) => fs.remove_tree(path.as_bytes()),
            Edit::Truncate(path) => fs.truncate_file(path.as_bytes()),
            Edit::Write(path, data, _) => fs.write_file(path.as_bytes(), data, false),
            Edit::Create(path, data) => fs.write_file(path.as_bytes(), data, true),
        };
        result.unwrap_or_else(|e| panic!("native edit failed: {e}"));
    }
}

/// The debugfs commands for `edits`; `before` is the tree before them (for the order
/// of a tree's removal), `host` a directory for the new contents.
fn debugfs_script(
    edits: &[Edit],
    before: &native_support::edit_oracle::Tree,
    host: &Path,
) -> String {
    let mut script = String::new();
    for (n, edit) in edits.iter().enumerate() {
        let write_host = |path: &str, data: &[u8], mode: u32| {
            let file = host.join(format!("content-{n}"));
            std::fs::write(&file, data).unwrap();
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
            format!("write {} {path}\n", file.display())
        };
        match edit {
            Edit::Remove(path) => script.push_str(&format!("rm {path}\n")),
            Edit::Truncate(path) => {
                script.push_str(&format!("punch {path} 0\nsif {path} size 0\n"))
            }
            Edit::Write(path, data, mode) => {
                script.push_str(&format!("rm {path}\n"));
                script.push_str(&write_host(path, data, *mode));
            }
            Edit::Create(path, data) => script.push_str(&write_host(path, data, 0o644)),
            Edit::RemoveTree(top) => {
                // Deepest paths first: files, then each directory once empty.
                let prefix = format!("{top}/");
                let mut below: Vec<(&String, u16)> = before
                    .iter()
                    .filter(|(p, _)| p.starts_with(&prefix))
                    .map(|(p, f)| (p, f.0))
                    .collect();
                below.sort_by_key(|(p, _)| std::cmp::Reverse(p.matches('/').count()));
                for (path, mode) in below {
                    let verb = if mode & 0o170000 == 0o040000 {
                        "rmdir"
                    } else {
                        "rm"
                    };
                    script.push_str(&format!("{verb} {path}\n"));
                }
                script.push_str(&format!("rmdir {top}\n"));
            }
        }
    }
    script
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
