//! The ext4 oracle: a full native walk of a filesystem (every path with its inode,
//! mode, size and content hash or link target) compared with what debugfs reports for
//! the same image: `ls -p` of every directory (inode, mode, size) and `rdump` of the
//! whole tree (content and link targets).

use std::collections::BTreeMap;
use std::path::Path;

use imgferry::guest::native::ext4::inode::InodeKind;
use imgferry::guest::native::ext4::Ext4;
use sha2::{Digest, Sha256};

use super::run;

/// What the native reader says about one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub inode: u32,
    pub mode: u16,
    pub size: u64,
    /// sha256 of a regular file's content, or a symlink's target.
    pub content: Option<String>,
}

/// Files larger than this are not read by the walk (fixtures hold none).
const READ_LIMIT: u64 = 64 << 20;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Walks the whole filesystem natively: path ("/a/b") → facts.
pub fn native_walk(fs: &Ext4) -> BTreeMap<String, Found> {
    let mut found = BTreeMap::new();
    let mut stack = vec![(String::new(), fs.root().unwrap())];
    while let Some((path, dir)) = stack.pop() {
        let entries = fs.read_dir(&dir).unwrap_or_else(|e| panic!("{path}/: {e}"));
        for entry in entries {
            let name = String::from_utf8(entry.name.clone()).expect("test names are UTF-8");
            let child_path = format!("{path}/{name}");
            let inode = fs.inode(entry.inode).unwrap();
            let content = match inode.kind() {
                InodeKind::File => {
                    let data = fs.read_file(&inode, READ_LIMIT).unwrap();
                    assert_eq!(data.len() as u64, inode.size, "{child_path}");
                    Some(hex(&Sha256::digest(&data)))
                }
                InodeKind::Symlink => {
                    Some(String::from_utf8_lossy(&fs.read_link(&inode).unwrap()).into_owned())
                }
                _ => None,
            };
            let facts = Found {
                inode: entry.inode,
                mode: inode.mode,
                size: inode.size,
                content,
            };
            if inode.kind() == InodeKind::Directory {
                stack.push((child_path.clone(), inode));
            }
            assert!(
                found.insert(child_path.clone(), facts).is_none(),
                "{child_path} twice"
            );
        }
    }
    found
}

/// debugfs's `ls -p` of every directory in `walk`: path → (inode, mode, size of
/// regular files). `image` may carry `?offset=N` for a partition.
fn debugfs_listing(
    image: &str,
    walk: &BTreeMap<String, Found>,
    dir: &Path,
) -> BTreeMap<String, (u32, u16, Option<u64>)> {
    let mut dirs = vec![String::from("/")];
    dirs.extend(
        walk.iter()
            .filter(|(_, f)| f.mode & 0o170000 == 0o040000)
            .map(|(p, _)| p.clone()),
    );
    let script: String = dirs.iter().map(|d| format!("ls -p \"{d}\"\n")).collect();
    let script_path = dir.join("debugfs-ls.txt");
    std::fs::write(&script_path, script).unwrap();
    let out = run("debugfs", &["-f", script_path.to_str().unwrap(), image]);
    let mut listing = BTreeMap::new();
    let mut current = String::new();
    for line in out.lines() {
        if let Some(cmd) = line.strip_prefix("debugfs: ls -p ") {
            current = cmd.trim_matches('"').trim_end_matches('/').to_owned();
            continue;
        }
        let Some(fields) = line.strip_prefix('/') else {
            continue;
        };
        let parts: Vec<&str> = fields.split('/').collect();
        let name = parts[4];
        // Skip "." and "..", and the empty (inode 0) record debugfs shows for a block
        // without live entries.
        if name == "." || name == ".." || parts[0] == "0" {
            continue;
        }
        let mode = u16::from_str_radix(parts[1], 8).unwrap();
        let size = parts[5]
            .parse()
            .ok()
            .filter(|_| mode & 0o170000 == 0o100000);
        listing.insert(
            format!("{current}/{name}"),
            (parts[0].parse().unwrap(), mode, size),
        );
    }
    listing
}

/// Compares the native walk of `fs` with debugfs on `image`: listings equal, and
/// every file's content and symlink's target equal to what `rdump` wrote. Returns the
/// walk for further checks.
pub fn assert_matches_debugfs(fs: &Ext4, image: &str, scratch: &Path) -> BTreeMap<String, Found> {
    let walk = native_walk(fs);
    let expected = debugfs_listing(image, &walk, scratch);
    let native: BTreeMap<String, (u32, u16, Option<u64>)> = walk
        .iter()
        .map(|(path, f)| {
            let size = Some(f.size).filter(|_| f.mode & 0o170000 == 0o100000);
            (path.clone(), (f.inode, f.mode, size))
        })
        .collect();
    let missing: Vec<_> = expected
        .keys()
        .filter(|p| !native.contains_key(*p))
        .collect();
    let extra: Vec<_> = native
        .keys()
        .filter(|p| !expected.contains_key(*p))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{image}: missing natively {missing:?}, not in debugfs {extra:?}"
    );
    for (path, facts) in &expected {
        assert_eq!(native.get(path), Some(facts), "{image}: {path}");
    }
    let dump = scratch.join("rdump");
    std::fs::create_dir(&dump).unwrap();
    run(
        "debugfs",
        &["-R", &format!("rdump / {}", dump.display()), image],
    );
    for (path, found) in &walk {
        let host = dump.join(path.trim_start_matches('/'));
        match found.mode & 0o170000 {
            0o100000 => {
                let mut data =
                    std::fs::read(&host).unwrap_or_else(|e| panic!("{}: {e}", host.display()));
                // debugfs 1.47.0 dumps inline-data files with the zero padding of their
                // 60 inline bytes (its own `stat` says Size: 5): compare within i_size.
                if data.len() as u64 > found.size && data.len() <= 60 {
                    assert!(
                        data[found.size as usize..].iter().all(|&b| b == 0),
                        "{path}"
                    );
                    data.truncate(found.size as usize);
                }
                assert_eq!(
                    found.content.as_deref(),
                    Some(hex(&Sha256::digest(&data)).as_str()),
                    "{path}"
                );
            }
            0o120000 => {
                let target = std::fs::read_link(&host).unwrap();
                assert_eq!(found.content.as_deref(), target.to_str(), "{path}");
            }
            _ => {}
        }
    }
    walk
}
