//! Oracles for the native edit tests: filesystems built by `mke2fs -d` in the feature
//! variants edits must keep consistent, the same edits made by debugfs on a copy, the
//! native edits committed through the backend's commit seam, `e2fsck -fn` on both, and
//! file trees compared path by path (mode, size, content; inode numbers may differ).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use imgferry::guest::native::commit;
use imgferry::guest::native::ext4::Ext4;
use imgferry::guest::native::Volume;

use super::ext4_oracle::{assert_matches_debugfs, native_walk};
use super::{arg, blank_disk, open_disk, run};

/// A feature variant: a name and its mke2fs options; `index_dirs` runs `e2fsck -fyD`
/// afterwards so large directories become htrees.
pub struct Variant {
    pub name: &'static str,
    pub options: &'static [&'static str],
    pub index_dirs: bool,
}

/// The variants every edit is checked on.
pub const VARIANTS: [Variant; 5] = [
    Variant {
        name: "ext4-64bit-csum",
        options: &["-t", "ext4", "-b", "4096", "-O", "64bit,metadata_csum"],
        index_dirs: false,
    },
    Variant {
        name: "ext4-uninit-bg",
        options: &["-t", "ext4", "-O", "^metadata_csum,^64bit,uninit_bg"],
        index_dirs: false,
    },
    Variant {
        name: "ext4-1k",
        options: &["-t", "ext4", "-b", "1024"],
        index_dirs: false,
    },
    Variant {
        name: "ext3-1k-indirect",
        options: &["-t", "ext3", "-b", "1024"],
        index_dirs: false,
    },
    Variant {
        name: "ext4-htree",
        options: &["-t", "ext4", "-b", "1024"],
        index_dirs: true,
    },
];

/// The filesystem UUID every variant is made with.
const FS_UUID: &str = "3a8f5c20-6b1d-4e97-9c42-d05e7b18a6f3";
/// The htree hash seed every variant is made with (`mke2fs -E`).
const HASH_SEED: &str = "hash_seed=91b4e6d2-0f7a-4c38-a5e1-6c2d8b9f4a07";

/// Builds `image` (`size` bytes) from `tree` in `variant`.
pub fn make_fs(image: &Path, tree: &Path, size: u64, variant: &Variant) {
    blank_disk(image, size);
    // A fixed UUID and htree hash seed: a seed's failure rebuilds the same filesystem.
    let mut args = vec!["-q", "-F", "-U", FS_UUID, "-E", HASH_SEED];
    args.extend_from_slice(variant.options);
    args.extend_from_slice(&["-d", arg(tree), arg(image)]);
    run("mke2fs", &args);
    if variant.index_dirs {
        // Exit 1 means "errors corrected" (the directories it optimised).
        let status = Command::new("e2fsck")
            .args(["-fyD", arg(image)])
            .output()
            .unwrap()
            .status;
        assert!(
            status.code().is_some_and(|c| c <= 1),
            "e2fsck -fyD {status}"
        );
    }
    assert_fsck_clean(image);
}

/// `e2fsck -fn` finds nothing to fix.
pub fn assert_fsck_clean(image: &Path) {
    let out = Command::new("e2fsck")
        .args(["-fn", arg(image)])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "e2fsck -fn {} ({}):\n{}{}",
        image.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs debugfs in write mode with the commands `script` (one per line) and fails
/// when any command reports an error.
pub fn debugfs_write(image: &Path, script: &str, scratch: &Path) {
    let file = scratch.join("debugfs-script.txt");
    std::fs::write(&file, script).unwrap();
    let out = Command::new("debugfs")
        .args(["-w", "-f", arg(&file), arg(image)])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // debugfs prints its version banner on stderr and exits 0 even when a command
    // fails: every other stderr line is a failed command.
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("debugfs "))
        .collect();
    assert!(
        out.status.success() && errors.is_empty(),
        "debugfs: {errors:?}"
    );
}

/// Opens the whole-disk filesystem `image`, lets `edit` change it natively, runs the
/// self-check and commits the writes into the image. Returns how many writes.
pub fn edit_natively(image: &Path, edit: impl FnOnce(&mut Ext4)) -> usize {
    let disk = open_disk(image);
    let mut fs = Ext4::open(Volume::whole(disk.clone())).unwrap();
    edit(&mut fs);
    fs.self_check()
        .unwrap_or_else(|e| panic!("self-check: {e}"));
    let writes = fs.overlay().disk_writes(disk.as_ref()).unwrap();
    drop(fs);
    drop(disk);
    commit::apply(image, &writes).unwrap();
    writes.data.len() + writes.zeros.len()
}

/// path → (mode, size, sha256 of content or link target) of every file of `image`.
pub type Tree = BTreeMap<String, (u16, u64, Option<String>)>;

/// The tree of `image`, after checking the native reader agrees with debugfs on it.
pub fn tree_checked(image: &Path, scratch: &Path) -> Tree {
    let fs = Ext4::open(Volume::whole(open_disk(image))).unwrap();
    let walk = assert_matches_debugfs(&fs, arg(image), scratch);
    walk.into_iter()
        .map(|(path, f)| (path, (f.mode, f.size, f.content)))
        .collect()
}

/// The tree of `image` as the native reader sees it.
pub fn tree(image: &Path) -> Tree {
    let fs = Ext4::open(Volume::whole(open_disk(image))).unwrap();
    native_walk(&fs)
        .into_iter()
        .map(|(path, f)| (path, (f.mode, f.size, f.content)))
        .collect()
}

/// Fails with the differences when two trees are not equal.
pub fn assert_same_tree(native: &Tree, reference: &Tree, context: &str) {
    let mut diffs = Vec::new();
    for (path, facts) in native {
        match reference.get(path) {
            None => diffs.push(format!("only natively: {path}")),
            Some(other) if other != facts => {
                diffs.push(format!("{path}: native {facts:?}, debugfs {other:?}"))
            }
            _ => {}
        }
    }
    for path in reference.keys().filter(|p| !native.contains_key(*p)) {
        diffs.push(format!("only with debugfs: {path}"));
    }
    assert!(
        diffs.is_empty(),
        "{context}: {} differences: {diffs:#?}",
        diffs.len()
    );
}
