//! The native ext2/3/4 reader against debugfs: filesystems made by `mke2fs -d` from a
//! seed tree (files of sizes around every block and inline boundary, sparse files,
//! fast and slow symlinks, nested and large directories, UTF-8 names) with each
//! feature variation the reader must handle, walked natively and compared path by
//! path with debugfs (`ls -p` of every directory, `rdump` content and link targets).
//! Corrupted metadata must be reported as a checksum error, never read as content.

mod native_support;

use std::os::unix::fs::symlink;
use std::path::Path;

use imgferry::guest::native::ext4::inode::flags;
use imgferry::guest::native::ext4::Ext4;
use imgferry::guest::native::partition::read_partition_table;
use imgferry::guest::native::{NativeError, Volume};
use native_support::ext4_oracle::assert_matches_debugfs;
use native_support::{arg, blank_disk, fixture, open_disk, run, to_raw};

/// Files in the directory that becomes an htree after `e2fsck -D`.
const BIG_DIR_FILES: usize = 2000;

fn seed_tree(root: &Path, big_dir: bool) {
    let write = |rel: &str, data: &[u8]| {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    };
    let pattern = |len: usize| {
        (0..len)
            .map(|i| (i * 7 + i / 251) as u8)
            .collect::<Vec<_>>()
    };
    for len in [
        0, 1, 59, 60, 61, 150, 1023, 1024, 1025, 4095, 4096, 4097, 65_537, 300_000,
    ] {
        write(&format!("sizes/file-{len}"), &pattern(len));
    }
    write("etc/hostname", b"prod-01\n");
    write("etc/deep/er/still/leaf.txt", b"leaf\n");
    write("names/caf\u{e9} \u{2603} spaced", b"utf-8 name\n");
    // Sparse: 1 MiB hole, then data, then another hole to the end.
    let sparse = root.join("sizes/sparse");
    let file = std::fs::File::create(&sparse).unwrap();
    use std::os::unix::fs::FileExt;
    file.write_all_at(b"after the hole", 1 << 20).unwrap();
    file.set_len(3 << 20).unwrap();
    symlink("hostname", root.join("etc/fast-link")).unwrap();
    symlink(
        "/".to_owned() + &"long/".repeat(30) + "target",
        root.join("etc/slow-link"),
    )
    .unwrap();
    symlink("../sizes/file-60", root.join("etc/relative-link")).unwrap();
    std::fs::create_dir_all(root.join("empty-dir")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        root.join("etc/hostname"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    if big_dir {
        for i in 0..BIG_DIR_FILES {
            write(
                &format!("big/entry-with-a-longish-name-{i:05}"),
                format!("{i}\n").as_bytes(),
            );
        }
    }
}

/// Makes a filesystem image of `size` bytes from `tree` with `mke2fs` options.
fn make_fs(image: &Path, tree: &Path, size: u64, options: &[&str]) {
    blank_disk(image, size);
    // A fixed UUID and htree hash seed: the same directory layout every run.
    let mut args = vec![
        "-q",
        "-F",
        "-U",
        "0c6f2a51-93d4-4e0b-8a7e-5d2b1f4c6e90",
        "-E",
        "hash_seed=7d1e9b3a-2c4f-4a85-b6d0-e3f19a8c5b27",
    ];
    args.extend_from_slice(options);
    args.extend_from_slice(&["-d", arg(tree), arg(image)]);
    run("mke2fs", &args);
}

fn open(image: &Path) -> Ext4 {
    Ext4::open(Volume::whole(open_disk(image))).unwrap()
}

/// Builds one variant and compares it with debugfs; returns the open filesystem.
fn check_variant(name: &str, options: &[&str], big_dir: bool) -> Ext4 {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    seed_tree(&tree, big_dir);
    let image = dir.path().join(format!("{name}.img"));
    make_fs(&image, &tree, 64 << 20, options);
    if big_dir {
        // mke2fs -d links entries linearly; e2fsck -D rebuilds large directories as htrees.
        let _ = std::process::Command::new("e2fsck")
            .args(["-fyD", arg(&image)])
            .output()
            .unwrap();
    }
    run("e2fsck", &["-fn", arg(&image)]);
    let fs = open(&image);
    let scratch = dir.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    let walk = assert_matches_debugfs(&fs, arg(&image), &scratch);
    assert!(
        walk.contains_key("/etc/slow-link") && walk.contains_key("/sizes/sparse"),
        "{name}"
    );
    fs
}

#[test]
fn ext4_default_features_4k_blocks() {
    let fs = check_variant("ext4", &["-t", "ext4", "-b", "4096"], false);
    assert!(fs.sb.has_metadata_csum());
}

#[test]
fn ext4_1k_blocks_with_an_htree_directory() {
    let fs = check_variant("ext4-1k", &["-t", "ext4", "-b", "1024"], true);
    let big = fs.lookup(b"/big").unwrap().unwrap();
    assert!(big.has_flag(flags::INDEX), "e2fsck -D did not index /big");
    assert_eq!(fs.read_dir(&big).unwrap().len(), BIG_DIR_FILES);
}

#[test]
fn ext4_htree_with_4k_blocks_and_64bit() {
    let fs = check_variant(
        "ext4-64",
        &["-t", "ext4", "-b", "4096", "-O", "64bit"],
        true,
    );
    assert_eq!(fs.sb.desc_size, 64);
    assert!(fs.lookup(b"/big").unwrap().unwrap().has_flag(flags::INDEX));
}

#[test]
fn ext4_without_metadata_csum_or_64bit() {
    let fs = check_variant(
        "ext4-nocsum",
        &["-t", "ext4", "-O", "^metadata_csum,^64bit,uninit_bg"],
        false,
    );
    assert!(!fs.sb.has_metadata_csum() && fs.sb.has_gdt_csum());
}

#[test]
fn ext4_inline_data_and_128_byte_inodes() {
    let fs = check_variant("ext4-inline", &["-t", "ext4", "-O", "inline_data"], false);
    // 61 bytes: 60 in i_block, the last one in the system.data extended attribute.
    let file = fs.lookup(b"/sizes/file-61").unwrap().unwrap();
    assert!(file.has_flag(flags::INLINE_DATA));
    let names = fs.lookup(b"/names").unwrap().unwrap();
    assert!(names.has_flag(flags::INLINE_DATA));
    assert_eq!(fs.read_dir(&names).unwrap().len(), 1);
    check_variant("ext4-small-inodes", &["-t", "ext4", "-I", "128"], false);
}

#[test]
fn ext3_and_ext2_indirect_blocks() {
    for (name, kind) in [("ext3", "ext3"), ("ext2", "ext2")] {
        let fs = check_variant(name, &["-t", kind, "-b", "1024"], false);
        let file = fs.lookup(b"/sizes/file-300000").unwrap().unwrap();
        assert!(
            !file.has_flag(flags::EXTENTS),
            "{name}: double indirect blocks expected"
        );
    }
}

/// Flips one byte of `image` at `offset`.
fn flip(image: &Path, offset: u64) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(image)
        .unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, offset).unwrap();
    file.write_all_at(&[byte[0] ^ 0x10], offset).unwrap();
}

#[test]
fn corrupted_metadata_is_a_checksum_error() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    seed_tree(&tree, false);
    let image = dir.path().join("csum.img");
    make_fs(&image, &tree, 16 << 20, &["-t", "ext4", "-b", "4096"]);
    let fs = open(&image);
    let inode = fs.lookup(b"/etc/hostname").unwrap().unwrap();
    let etc = fs.lookup(b"/etc").unwrap().unwrap();
    let etc_block = imgferry::guest::native::ext4::blockmap::map(&fs, &etc, 1).unwrap()[0].physical;
    let inode_offset = {
        let index = u64::from(inode.number - 1);
        let group = &fs.groups()[(index / u64::from(fs.sb.inodes_per_group)) as usize];
        group.inode_table * 4096
            + (index % u64::from(fs.sb.inodes_per_group)) * u64::from(fs.sb.inode_size)
    };
    drop(fs);
    // An inode: its mode byte.
    let copy = dir.path().join("inode.img");
    std::fs::copy(&image, &copy).unwrap();
    flip(&copy, inode_offset + 1);
    let err = open(&copy).lookup(b"/etc/hostname").unwrap_err();
    assert!(
        matches!(
            err,
            NativeError::Checksum {
                structure: "ext4 inode",
                ..
            }
        ),
        "{err:?}"
    );
    // A directory block: a byte of a name.
    let copy = dir.path().join("dir.img");
    std::fs::copy(&image, &copy).unwrap();
    flip(&copy, etc_block * 4096 + 30);
    let err = open(&copy).lookup(b"/etc/hostname").unwrap_err();
    assert!(
        matches!(
            err,
            NativeError::Checksum {
                structure: "ext4 directory block",
                ..
            }
        ),
        "{err:?}"
    );
    // The superblock and a group descriptor.
    for (label, offset, structure) in [
        ("sb", 1024 + 0x20, "ext4 superblock"),
        ("gd", 4096 + 2, "ext4 group descriptor"),
    ] {
        let copy = dir.path().join(format!("{label}.img"));
        std::fs::copy(&image, &copy).unwrap();
        flip(&copy, offset);
        let err = Ext4::open(Volume::whole(open_disk(&copy))).unwrap_err();
        assert!(
            matches!(err, NativeError::Checksum { structure: s, .. } if s == structure),
            "{label}: {err:?}"
        );
    }
}

#[test]
fn debian_and_ubuntu_root_filesystems_match_debugfs() {
    let dir = tempfile::tempdir().unwrap();
    for (name, number) in [("debian", 1), ("ubuntu", 1)] {
        let qcow2 = fixture(name);
        let disk = open_disk(&qcow2);
        let table = read_partition_table(disk.as_ref()).unwrap();
        let part = table
            .partitions
            .iter()
            .find(|p| p.number == number)
            .unwrap();
        let start = part.start_byte().unwrap();
        let volume = Volume::range(disk, start, part.size_bytes().unwrap()).unwrap();
        let fs = Ext4::open(volume).unwrap();
        let raw = dir.path().join(format!("{name}.raw"));
        to_raw(&qcow2, &raw);
        let scratch = dir.path().join(name);
        std::fs::create_dir(&scratch).unwrap();
        let spec = format!("{}?offset={start}", raw.display());
        let walk = assert_matches_debugfs(&fs, &spec, &scratch);
        assert!(
            walk.contains_key("/etc/os-release") && walk.contains_key("/etc/machine-id"),
            "{name}"
        );
    }
}
