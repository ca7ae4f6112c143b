//! Differential fuzzing of the native ext4 writer against debugfs: seeded random
//! sequences of remove / remove-tree / truncate / rewrite / create, each chosen from
//! the tree as it stands after the edits before it, are made natively on one copy of
//! a variant's filesystem (committed in rounds, so later rounds read what earlier ones
//! wrote) and by `debugfs -w` on another. After every round both copies must be
//! `e2fsck -fn` clean and hold equal file trees.
//!
//! Bounded for CI: `CASES` seeds per variant. `IMGFERRY_EDIT_FUZZ_CASES=N` runs more;
//! a failure names its variant, seed and the edits of the failing round.

mod native_support;

use native_support::edit_oracle::{
    assert_fsck_clean, assert_same_tree, debugfs_write, edit_natively, make_fs, tree, Tree,
    Variant, VARIANTS,
};
use native_support::edits::{apply_native, debugfs_script, pattern, seed_tree, Edit};

const CASES: u64 = 2;
const ROUNDS: usize = 3;
const EDITS_PER_ROUND: usize = 12;
/// Around the boundaries that matter: inline-sized, one block of 1 KiB and 4 KiB,
/// direct → indirect (12 blocks of 1 KiB), several extents' worth.
const CONTENT_SIZES: [usize; 14] = [
    0, 1, 59, 60, 61, 1023, 1025, 4095, 4097, 12_288, 13_313, 49_152, 70_000, 200_000,
];
const S_IFMT: u16 = 0o170_000;
const S_IFDIR: u16 = 0o040_000;
const S_IFREG: u16 = 0o100_000;

/// splitmix64: small and seedable, enough to pick edits.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick(&mut self, items: &[String]) -> Option<String> {
        (!items.is_empty()).then(|| items[self.below(items.len())].clone())
    }
}

/// Paths of `state` whose type is `kind` (`None`: anything but a directory).
/// `/data` holds a hard-linked pair: debugfs rewrites by unlink + write, which would
/// split the pair, so rewrites and truncates stay out of it.
fn paths(state: &Tree, kind: Option<u16>) -> Vec<String> {
    state
        .iter()
        .filter(|(path, facts)| match kind {
            Some(S_IFDIR) => facts.0 & S_IFMT == S_IFDIR,
            Some(k) => facts.0 & S_IFMT == k && !path.starts_with("/data/"),
            None => facts.0 & S_IFMT != S_IFDIR,
        })
        .map(|(path, _)| path.clone())
        .collect()
}

/// `state` as `edit` changes it: which paths exist and their type (what later
/// choices and a tree's removal depend on; sizes and contents are not tracked).
fn advance(state: &mut Tree, edit: &Edit) {
    match edit {
        Edit::Remove(path) => {
            state.remove(path);
        }
        Edit::RemoveTree(top) => {
            let prefix = format!("{top}/");
            state.retain(|path, _| path != top && !path.starts_with(&prefix));
        }
        Edit::Create(path, _) => {
            state.insert(path.clone(), (S_IFREG | 0o644, 0, None));
        }
        Edit::Truncate(_) | Edit::Write(..) => {}
    }
}

/// One random edit valid on `state`; names it creates carry `step`.
fn random_edit(rng: &mut Rng, state: &Tree, step: usize) -> Option<Edit> {
    let content = |rng: &mut Rng| pattern(CONTENT_SIZES[rng.below(CONTENT_SIZES.len())], step);
    Some(match rng.below(20) {
        0..=4 => Edit::Remove(rng.pick(&paths(state, None))?),
        5..=7 => Edit::Truncate(rng.pick(&paths(state, Some(S_IFREG)))?),
        8..=11 => {
            let path = rng.pick(&paths(state, Some(S_IFREG)))?;
            let mode = u32::from(state[&path].0 & 0o7777);
            Edit::Write(path, content(rng), mode)
        }
        12..=18 => {
            // The root too: an edit can always be made, even once everything is gone.
            let mut dirs = paths(state, Some(S_IFDIR));
            if !dirs.iter().any(|d| d == "/") {
                dirs.push("/".to_owned());
            }
            let dir = rng.pick(&dirs)?;
            let name = format!("fz{step}-{}", "n".repeat(1 + rng.below(60)));
            Edit::Create(
                format!("{}/{name}", dir.trim_end_matches('/')),
                content(rng),
            )
        }
        _ => {
            let dirs: Vec<String> = paths(state, Some(S_IFDIR))
                .into_iter()
                .filter(|d| d != "/")
                .collect();
            Edit::RemoveTree(rng.pick(&dirs)?)
        }
    })
}

/// The debugfs script for `edits`, each said against the tree as it stands before it
/// (a tree's removal lists what is below it then).
fn script_for(edits: &[Edit], before: &Tree, host: &std::path::Path) -> String {
    let mut state = before.clone();
    let mut script = String::new();
    for (n, edit) in edits.iter().enumerate() {
        let dir = host.join(format!("edit-{n}"));
        std::fs::create_dir_all(&dir).unwrap();
        script += &debugfs_script(std::slice::from_ref(edit), &state, &dir);
        advance(&mut state, edit);
    }
    script
}

fn describe(edits: &[Edit]) -> Vec<String> {
    edits
        .iter()
        .map(|edit| match edit {
            Edit::Remove(p) => format!("remove {p}"),
            Edit::RemoveTree(p) => format!("remove tree {p}"),
            Edit::Truncate(p) => format!("truncate {p}"),
            Edit::Write(p, data, _) => format!("rewrite {p} ({} bytes)", data.len()),
            Edit::Create(p, data) => format!("create {p} ({} bytes)", data.len()),
        })
        .collect()
}

fn fuzz_case(variant: &Variant, seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let tree_root = dir.path().join("seed");
    seed_tree(&tree_root, variant.index_dirs);
    let native = dir.path().join("native.img");
    make_fs(&native, &tree_root, 32 << 20, variant);
    let reference = dir.path().join("debugfs.img");
    std::fs::copy(&native, &reference).unwrap();
    let mut rng = Rng(seed ^ 0x5eed_f00d);
    let mut step = 0;
    for round in 0..ROUNDS {
        let context = format!("{} seed {seed} round {round}", variant.name);
        let before = tree(&native);
        let mut state = before.clone();
        let mut edits = Vec::new();
        while edits.len() < EDITS_PER_ROUND {
            if let Some(edit) = random_edit(&mut rng, &state, step) {
                advance(&mut state, &edit);
                edits.push(edit);
            }
            step += 1;
        }
        let said = describe(&edits);
        eprintln!("{context}: {said:#?}");
        edit_natively(&native, |fs| apply_native(fs, &edits));
        let host = dir.path().join(format!("host-{round}"));
        debugfs_write(&reference, &script_for(&edits, &before, &host), dir.path());
        assert_fsck_clean(&native);
        assert_fsck_clean(&reference);
        assert_same_tree(
            &tree(&native),
            &tree(&reference),
            &format!("{context}: {said:#?}"),
        );
    }
}

fn fuzz_variant(variant: &Variant) {
    let cases = std::env::var("IMGFERRY_EDIT_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CASES);
    for seed in 0..cases {
        fuzz_case(variant, seed);
    }
}

#[test]
fn fuzz_ext4_64bit_metadata_csum() {
    fuzz_variant(&VARIANTS[0]);
}

#[test]
fn fuzz_ext4_uninit_bg() {
    fuzz_variant(&VARIANTS[1]);
}

#[test]
fn fuzz_ext4_1k_blocks() {
    fuzz_variant(&VARIANTS[2]);
}

#[test]
fn fuzz_ext3_indirect() {
    fuzz_variant(&VARIANTS[3]);
}

#[test]
fn fuzz_ext4_htree() {
    fuzz_variant(&VARIANTS[4]);
}
