//! A stable stand-in for a cargo-fuzz run: replays a committed corpus, then thousands
//! of deterministic mutations of it (bit flips, truncations, little-endian boundary
//! values and random bytes aimed at the metadata areas the caller names). The same
//! mutations every run, however fast the machine: no wall-clock budget decides how many
//! run. A panic saves the input to a file whose path the failure names.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::Instant;

/// What to replay.
pub struct Replay {
    /// Corpus folder under `fuzz/corpus/`, and the name used for saved crashes.
    pub target: &'static str,
    /// Byte ranges of a seed worth aiming mutations at.
    pub hot_ranges: fn(&[u8]) -> Vec<(usize, usize)>,
    /// The fuzz entry point; returns whether the input got past the first checks.
    pub run: fn(&[u8]) -> bool,
    /// Mutations to run after the corpus.
    pub cases: u64,
}

/// Runs the corpus (every file must be accepted) and the mutations; returns
/// `(mutations, accepted)`.
pub fn replay(config: &Replay) -> (u64, u64) {
    let corpus = corpus(config.target);
    for (name, bytes) in &corpus {
        assert!(
            run_case(config, name, bytes),
            "corpus file {name} is rejected"
        );
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let started = Instant::now();
    let (mut cases, mut accepted) = (0u64, 0u64);
    while cases < config.cases {
        let (name, seed) = &corpus[rng.below(corpus.len())];
        let input = mutate(&mut rng, seed, &(config.hot_ranges)(seed));
        accepted += u64::from(run_case(
            config,
            &format!("{name}-mutation-{cases}"),
            &input,
        ));
        cases += 1;
    }
    eprintln!(
        "{}: {cases} mutations in {:?}, {accepted} accepted",
        config.target,
        started.elapsed()
    );
    (cases, accepted)
}

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
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
    assert!(
        corpus.len() >= 3,
        "the committed corpus of {target} is missing"
    );
    corpus
}

fn run_case(config: &Replay, label: &str, input: &[u8]) -> bool {
    let outcome = catch_unwind(AssertUnwindSafe(|| (config.run)(input)));
    outcome.unwrap_or_else(|_| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let path = dir.join(format!("fuzz-crash-{}-{label}", config.target));
        std::fs::write(&path, input).unwrap();
        panic!(
            "{} panicked on {label}; input saved to {}",
            config.target,
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

const INTERESTING: [u64; 12] = [
    0,
    1,
    2,
    0x7f,
    0xff,
    0x1000,
    0x7fff_ffff,
    0xffff_ffff,
    0x1_0000_0000,
    1 << 62,
    (1 << 63) - 1,
    u64::MAX,
];

fn mutate(rng: &mut Rng, seed: &[u8], hot: &[(usize, usize)]) -> Vec<u8> {
    let mut input = seed.to_vec();
    let whole = [(0, seed.len())];
    let hot = if hot.is_empty() { &whole[..] } else { hot };
    for _ in 0..1 + rng.below(4) {
        let (start, end) = hot[rng.below(hot.len())];
        let span = end.saturating_sub(start);
        match rng.below(6) {
            0 => {
                let at = rng.below(input.len());
                if let Some(byte) = input.get_mut(at) {
                    *byte ^= 1 << rng.below(8);
                }
            }
            1 if rng.below(4) == 0 => input.truncate(rng.below(input.len() + 1)),
            2 | 3 => {
                let at = start + rng.below(span / 2) * 2;
                let width = [1, 2, 4, 8][rng.below(4)];
                let value = INTERESTING[rng.below(INTERESTING.len())].to_le_bytes();
                if let Some(dest) = input.get_mut(at..at + width) {
                    dest.copy_from_slice(&value[..width]);
                }
            }
            _ => {
                let at = start + rng.below(span);
                if let Some(byte) = input.get_mut(at) {
                    *byte ^= 1 << rng.below(8);
                }
            }
        }
    }
    input
}
