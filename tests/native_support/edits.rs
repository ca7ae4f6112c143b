//! The edits sysprep makes, said two ways: natively through `Ext4` and as a debugfs
//! script, plus the seed tree they are made on (a Debian-like /etc and /var with
//! symlinks, a hard link, large and small files, optionally an htree directory).

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use imgferry::guest::native::ext4::Ext4;

use super::edit_oracle::Tree;

/// Names in the directory that becomes an htree in the htree variant.
pub const BIG_DIR_FILES: usize = 3000;

pub fn pattern(len: usize, salt: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251 + salt) as u8).collect()
}

pub fn seed_tree(root: &Path, big_dir: bool) {
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
pub enum Edit {
    Remove(String),
    RemoveTree(String),
    Truncate(String),
    /// Path, new content, the file's mode (debugfs recreates it from a host file).
    Write(String, Vec<u8>, u32),
    Create(String, Vec<u8>),
}

pub fn apply_native(fs: &mut Ext4, edits: &[Edit]) {
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
pub fn debugfs_script(edits: &[Edit], before: &Tree, host: &Path) -> String {
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
