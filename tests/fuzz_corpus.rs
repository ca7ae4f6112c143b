//! Stable stand-in for the cargo-fuzz target `qcow2_open_read`: replays the committed
//! corpus, then thousands of deterministic mutations of it (bit flips, truncations,
//! overwrites of the header, L1 and L2 areas with boundary values), the same ones
//! every run. Any panic is saved to a file whose path the failure names.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::Instant;

use imgferry::disk::fuzzing::qcow2_open_read;

/// Mutations to run after the corpus (about half a second here).
const CASES: u64 = 60_000;

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/qcow2_open_read");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    let corpus: Vec<_> = files
        .into_iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    assert!(corpus.len() >= 5, "the committed corpus is missing");
    corpus
}

/// Runs the target on `input` and returns whether the image opened; on panic saves the
/// input and fails naming the file.
fn run_case(label: &str, input: &[u8]) -> bool {
    let outcome = catch_unwind(AssertUnwindSafe(|| qcow2_open_read(input)));
    outcome.unwrap_or_else(|_| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let path = dir.join(format!("fuzz-crash-{label}.qcow2"));
        std::fs::write(&path, input).unwrap();
        panic!(
            "qcow2_open_read panicked on {label}; input saved to {}",
            path.display()
        );
    })
}

/// xorshift64*: deterministic, so a failure reproduces on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn be64(bytes: &[u8], at: usize) -> u64 {
    bytes
        .get(at..at + 8)
        .map_or(0, |b| u64::from_be_bytes(b.try_into().unwrap()))
}

/// Byte ranges worth aiming at: the header, the L1 table, and the first L2 table.
fn hot_ranges(seed: &[u8]) -> Vec<(usize, usize)> {
    let mut ranges = vec![(0, 112.min(seed.len()))];
    let l1 = be64(seed, 40) as usize;
    if l1 < seed.len() {
        ranges.push((l1, (l1 + 64).min(seed.len())));
        let l2 = (be64(seed, l1) & 0x00ff_ffff_ffff_fe00) as usize;
        if l2 > 0 && l2 < seed.len() {
            ranges.push((l2, (l2 + 512).min(seed.len())));
        }
    }
    ranges
}

const INTERESTING: [u64; 10] = [
    0,
    1,
    511,
    512,
    0x7fff_ffff,
    0xffff_ffff,
    1 << 62,
    (1 << 63) - 512,
    0x00ff_ffff_ffff_fe00,
    u64::MAX,
];

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut input = seed.to_vec();
    let hot = hot_ranges(seed);
    for _ in 0..1 + rng.below(4) {
        match rng.below(5) {
            0 => {
                // Flip one bit anywhere.
                let at = rng.below(input.len());
                if let Some(byte) = input.get_mut(at) {
                    *byte ^= 1 << rng.below(8);
                }
            }
            1 => input.truncate(rng.below(input.len() + 1)),
            2 | 3 => {
                // A boundary value over an aligned word of a metadata area.
                let (start, end) = hot[rng.below(hot.len())];
                let at = start + rng.below(end.saturating_sub(start) / 4) * 4;
                let width = if rng.below(2) == 0 { 4 } else { 8 };
                let value = INTERESTING[rng.below(INTERESTING.len())].to_be_bytes();
                if let Some(dest) = input.get_mut(at..at + width) {
                    dest.copy_from_slice(&value[8 - width..]);
                }
            }
            _ => {
                // A random byte in a metadata area.
                let (start, end) = hot[rng.below(hot.len())];
                let at = start + rng.below(end.saturating_sub(start));
                if let Some(byte) = input.get_mut(at) {
                    *byte = rng.next() as u8;
                }
            }
        }
    }
    input
}

#[test]
fn corpus_and_mutations_never_panic() {
    let corpus = corpus();
    for (name, bytes) in &corpus {
        assert!(run_case(name, bytes), "corpus file {name} does not open");
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let started = Instant::now();
    let (mut cases, mut opened) = (0u64, 0u64);
    while cases < CASES {
        let (name, seed) = &corpus[rng.below(corpus.len())];
        let input = mutate(&mut rng, seed);
        opened += u64::from(run_case(&format!("{name}-mutation-{cases}"), &input));
        cases += 1;
    }
    eprintln!(
        "{cases} mutations in {:?}, {opened} opened",
        started.elapsed()
    );
    // Mutations that never get past the header would test little.
    assert!(
        opened * 5 >= cases,
        "only {opened} of {cases} mutants opened"
    );
}
