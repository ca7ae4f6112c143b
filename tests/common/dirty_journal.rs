//! Filesystems as a crashed guest leaves them, made with debugfs on whole-filesystem
//! images: the latest metadata only in the jbd2 journal (`needs_recovery` set), and
//! inodes on the orphan list (deleted while still open).
//!
//! [`journal_back`] turns a finished filesystem into its dirty twin: a stale state
//! on disk plus a journal whose replay gives the finished state back, with the traps
//! a replay must get right around it (a revoked block, an uncommitted transaction).

use std::path::Path;
use std::process::Command;

use super::path_str;

/// Runs debugfs on `image` with the commands of `script` (one per line; `-w`:
/// writable) and fails when any command reports an error. Returns stdout without
/// the echoed commands.
pub fn debugfs(image: &Path, script: &str, writable: bool) -> String {
    let file = image.with_extension("debugfs-script");
    std::fs::write(&file, script).unwrap();
    let mut cmd = Command::new("debugfs");
    if writable {
        cmd.arg("-w");
    }
    let out = cmd
        .args(["-f", path_str(&file), path_str(image)])
        .output()
        .expect("debugfs");
    std::fs::remove_file(&file).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The version banner and the journal's "Setting csum" notes are not failures.
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("debugfs ") && !l.starts_with("Setting csum"))
        .collect();
    assert!(
        out.status.success() && errors.is_empty(),
        "debugfs {script:?}: {errors:?}"
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with("debugfs: "))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The filesystem's block size.
pub fn block_size(image: &Path) -> usize {
    let out = debugfs(image, "stats -h\n", false);
    out.lines()
        .find_map(|l| l.strip_prefix("Block size:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("a block size in debugfs stats")
}

/// The physical block holding logical block 0 of `path`.
pub fn first_block(image: &Path, path: &str) -> u64 {
    let out = debugfs(image, &format!("bmap {path} 0\n"), false);
    out.trim().parse().expect("a block number from bmap")
}

/// The inode number of `path`.
pub fn inode_of(image: &Path, path: &str) -> u32 {
    let out = debugfs(image, &format!("stat {path}\n"), false);
    out.split_whitespace()
        .skip_while(|w| *w != "Inode:")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("an inode number from stat")
}

/// Makes `path` (written from `host`) an orphan, as the kernel leaves a file deleted
/// while open: no name, no links, first on the superblock's orphan list. Returns its
/// inode number.
pub fn make_orphan(image: &Path, host: &Path, path: &str) -> u32 {
    debugfs(image, &format!("write {} {path}\n", path_str(host)), true);
    let number = inode_of(image, path);
    let stats = debugfs(image, "stats -h\n", false);
    let previous: u32 = stats
        .lines()
        .find_map(|l| l.strip_prefix("First orphan inode:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    debugfs(
        image,
        &format!(
            "unlink {path}\nsif <{number}> links_count 0\nsif <{number}> dtime {previous}\n\
             ssv last_orphan {number}\n"
        ),
        true,
    );
    number
}

/// What [`journal_back`] wrote into the journal.
#[derive(Debug)]
pub struct Journaled {
    /// Blocks the committed transaction restores.
    pub restored: usize,
    /// The block logged with garbage and revoked by the next transaction.
    pub revoked: u64,
    /// The block the uncommitted transaction would overwrite with garbage.
    pub uncommitted: u64,
}

/// Writes to `dirty` the filesystem `finished` made stale by `stale_script` (debugfs
/// commands), with a journal that restores `finished` on replay: transaction 1
/// (committed) logs every block that differs plus garbage for the first block of
/// `revoked_file`; transaction 2 (committed) revokes that block; transaction 3 is
/// not committed and logs garbage over the root directory. `journal_options` are
/// debugfs `journal_open`'s (`-c` for v3 checksums, `-c -v 2`, or none).
pub fn journal_back(
    finished: &Path,
    dirty: &Path,
    stale_script: &str,
    revoked_file: &str,
    journal_options: &str,
) -> Journaled {
    std::fs::copy(finished, dirty).unwrap();
    debugfs(dirty, stale_script, true);
    let size = block_size(finished);
    let want = std::fs::read(finished).unwrap();
    let stale = std::fs::read(dirty).unwrap();
    let changed: Vec<u64> = (0..want.len() / size)
        .filter(|&b| want[b * size..(b + 1) * size] != stale[b * size..(b + 1) * size])
        .map(|b| b as u64)
        .collect();
    assert!(!changed.is_empty(), "the stale script changed nothing");
    let revoked = first_block(finished, revoked_file);
    let uncommitted = first_block(finished, "<2>");
    assert!(
        !changed.contains(&revoked) && !changed.contains(&uncommitted),
        "{revoked_file} or / changed"
    );
    let mut data = Vec::new();
    for &block in &changed {
        let at = block as usize * size;
        data.extend_from_slice(&want[at..at + size]);
    }
    let garbage: Vec<u8> = (0..size).map(|i| (i * 13 + 7) as u8).collect();
    data.extend_from_slice(&garbage);
    let data_file = dirty.with_extension("journal-data");
    let garbage_file = dirty.with_extension("journal-garbage");
    std::fs::write(&data_file, data).unwrap();
    std::fs::write(&garbage_file, &garbage).unwrap();
    let mut logged: Vec<String> = changed.iter().map(u64::to_string).collect();
    logged.push(revoked.to_string());
    debugfs(
        dirty,
        &format!(
            "jo {journal_options}\njw -b {} {}\njw -r {revoked} /dev/null\n\
             jw -b {uncommitted} -c {}\njc\n",
            logged.join(","),
            path_str(&data_file),
            path_str(&garbage_file)
        ),
        true,
    );
    std::fs::remove_file(data_file).unwrap();
    std::fs::remove_file(garbage_file).unwrap();
    let stats = debugfs(dirty, "stats -h\n", false);
    assert!(stats.contains("needs_recovery"), "{stats}");
    Journaled {
        restored: changed.len(),
        revoked,
        uncommitted,
    }
}
