//! Stable stand-ins for the native backend's cargo-fuzz targets: each replays its
//! committed corpus (`fuzz/corpus/<target>`) and thousands of mutations aimed at the
//! structures its parser reads, within a few seconds.

mod native_support;

use imgferry::guest::native::fuzzing;
use native_support::replay::{replay, Replay};

/// The boot sector's entry table, the GPT header and first entries, the last sector
/// (backup GPT header) and the sectors where EBRs of the seeds sit.
fn partition_hot_ranges(seed: &[u8]) -> Vec<(usize, usize)> {
    let len = seed.len();
    let mut ranges = vec![
        (440, 512.min(len)),
        (512, 604.min(len)),
        (1024, 1536.min(len)),
    ];
    ranges.push((len.saturating_sub(512), len));
    for sector in [18, 20, 22, 30, 2] {
        let at = sector * 512 + 446;
        ranges.push((at.min(len), (at + 66).min(len)));
    }
    ranges
}

#[test]
fn partition_table_corpus_and_mutations_never_panic() {
    let (cases, accepted) = replay(&Replay {
        target: "partition_table",
        hot_ranges: partition_hot_ranges,
        run: |input| fuzzing::partition_table(input).is_some(),
        cases: 40_000,
    });
    // Mutations that never get past the signature checks would test little.
    assert!(
        accepted * 5 >= cases,
        "only {accepted} of {cases} mutants parsed"
    );
}

/// The first 96 KiB of the seeds: superblock, group descriptors, bitmaps, the inode
/// table and the first directory and extent blocks of these 160 KiB filesystems.
fn ext4_hot_ranges(seed: &[u8]) -> Vec<(usize, usize)> {
    vec![
        (1024, 2048.min(seed.len())),
        (2048, (96 << 10).min(seed.len())),
    ]
}

#[test]
fn ext4_walk_corpus_and_mutations_never_panic() {
    let (cases, accepted) = replay(&Replay {
        target: "ext4_walk",
        hot_ranges: ext4_hot_ranges,
        run: fuzzing::ext4_walk,
        cases: 20_000,
    });
    assert!(
        accepted * 5 >= cases,
        "only {accepted} of {cases} mutants opened"
    );
}

/// The superblock (orphan list head, journal inode) and the first blocks of the jbd2
/// journal (its superblock and the log after it), found by the journal's magic.
fn journal_hot_ranges(seed: &[u8]) -> Vec<(usize, usize)> {
    let magic = [0xc0, 0x3b, 0x39, 0x98];
    let journal = (0..seed.len() / 1024)
        .map(|b| b * 1024)
        .find(|&at| seed[at..at + 4] == magic)
        .unwrap_or(0);
    vec![
        (1024, 2048.min(seed.len())),
        (journal, (journal + 8 * 1024).min(seed.len())),
    ]
}

#[test]
fn ext4_recover_corpus_and_mutations_never_panic() {
    let (cases, accepted) = replay(&Replay {
        target: "ext4_recover",
        hot_ranges: journal_hot_ranges,
        run: fuzzing::ext4_recover,
        cases: 2_000,
    });
    assert!(
        accepted * 10 >= cases,
        "only {accepted} of {cases} mutants recovered"
    );
}

/// The label sectors, the metadata area header at 4 KiB and the start of its ring.
fn lvm_pv_hot_ranges(seed: &[u8]) -> Vec<(usize, usize)> {
    let len = seed.len();
    vec![
        (0, 2048.min(len)),
        (4096.min(len), 4608.min(len)),
        (4608.min(len), (24 << 10).min(len)),
    ]
}

#[test]
fn lvm_pv_corpus_and_mutations_never_panic() {
    let (cases, accepted) = replay(&Replay {
        target: "lvm_pv",
        hot_ranges: lvm_pv_hot_ranges,
        run: fuzzing::lvm_pv,
        cases: 20_000,
    });
    assert!(
        accepted * 5 >= cases,
        "only {accepted} of {cases} mutants read"
    );
}

fn whole(seed: &[u8]) -> Vec<(usize, usize)> {
    vec![(0, seed.len())]
}

#[test]
fn lvm_text_corpus_and_mutations_never_panic() {
    let (cases, accepted) = replay(&Replay {
        target: "lvm_text",
        hot_ranges: whole,
        run: fuzzing::lvm_text,
        cases: 40_000,
    });
    assert!(
        accepted * 10 >= cases,
        "only {accepted} of {cases} mutants parsed"
    );
}
