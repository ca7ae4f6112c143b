//! "Removed" means removed: after sysprep, nothing of what it removed, truncated or
//! replaced is readable anywhere in the image's bytes — free blocks, the ext4 journal,
//! inline data in inodes — on both backends.
//!
//! The guest is the Debian fixture's tree rebuilt with `mke2fs -d` after planting
//! secrets (host private keys, keytab, user keys, history, passwd backup, cloud-init
//! user-data, DHCP lease, a large log, a file given to `--truncate`) whose every line
//! carries a random token made for this run. After sysprep the whole raw image is
//! scanned for the token: zero hits with scrubbing; without (`Scrub::Keep`) every
//! planted file is found, so the scan can fail. Both results list the same guest and
//! check clean with `e2fsck -fn`. Natively also: a journal holding a committed copy of
//! a secret's block (as `data=journal` leaves it), and secrets stored as inline data.

mod common;
mod sysprep_support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::dirty_journal::{block_size, debugfs, first_block};
use common::path_str;
use imgferry::guest::native::NativeGuest;
use imgferry::guest::GuestFs;
use imgferry::pipeline::backend::{run_on_image, BackendChoice, BackendRun};
use imgferry::report::SilentReporter;
use imgferry::sysprep::{self, Hostname, Options, Scrub, UserAccounts, Words};
use sysprep_support::{differences, extract_tree, fixture, listing, Listing};

const NEW_HOSTNAME: &str = "scrubbed-01.example.net";
/// Everything but the operations whose result is random.
const WORDS: &str = "all,-fs-uuids,-lvm-uuids";
/// Given to `--truncate`.
const TRUNCATED: &str = "/etc/imgferry-truncated";

/// Planted secrets: guest path and size in bytes (several blocks each, so the blocks
/// a later write of the same run reuses cannot hide one from the unscrubbed scan).
/// Each is removed (or truncated) by the operations of [`options`].
const SECRETS: [(&str, usize); 11] = [
    ("/etc/ssh/ssh_host_rsa_key", 20_000),
    ("/etc/ssh/ssh_host_ed25519_key", 20_000),
    ("/etc/krb5.keytab", 20_000),
    ("/root/.ssh/id_ed25519", 20_000),
    ("/root/.ssh/authorized_keys", 20_000),
    ("/root/.bash_history", 20_000),
    ("/etc/shadow-", 20_000),
    ("/var/lib/cloud/instances/iid-old/user-data.txt", 20_000),
    ("/var/lib/dhcp/dhclient.eth0.leases", 20_000),
    ("/var/log/imgferry-secret.log", 300_000),
    (TRUNCATED, 20_000),
];
/// Small enough to be stored inline in a 256-byte inode.
const INLINE_SECRETS: [(&str, usize); 2] = [
    ("/etc/ssh/ssh_host_ed25519_key", 100),
    ("/etc/krb5.keytab", 90),
];

fn options(scrub: Scrub) -> Options {
    Options {
        operations: sysprep::select(&[Words::Operations(WORDS.to_owned())]).expect("words"),
        hostname: Some(Hostname::parse(NEW_HOSTNAME).unwrap()),
        truncate: vec![TRUNCATED.to_owned()],
        user_accounts: UserAccounts {
            keep: BTreeSet::from(["alice".to_owned()]),
            ..UserAccounts::default()
        },
        scrub,
        ..Options::default()
    }
}

/// Only removals: inline-data files cannot be rewritten natively, so the operations
/// that write (hostname, machine-id, ...) are left out.
fn removal_options(scrub: Scrub) -> Options {
    Options {
        operations: sysprep::select(&[Words::Enable(
            "ssh-hostkeys,kerberos-hostkeytab".to_owned(),
        )])
        .expect("words"),
        scrub,
        ..Options::default()
    }
}

fn sysprep(image: &Path, options: &Options, backend: BackendChoice) -> BackendRun {
    let ran = run_on_image(image, options, backend, &SilentReporter)
        .unwrap_or_else(|e| panic!("{}: sysprep with {backend:?}: {e}", image.display()));
    assert!(ran.committed, "{}: nothing committed", image.display());
    ran
}

/// A token no image holds by chance: 16 random bytes, hex.
fn token() -> String {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("read /dev/urandom");
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("imgferry-secret-{hex}")
}

/// Writes each secret below `tree`: lines `TOKEN|INDEX|PATH|N` up to its size (the
/// two-digit index of the secret comes first: inline data splits a line after 60 bytes).
fn plant(tree: &Path, token: &str, secrets: &[(&str, usize)]) {
    for (index, (path, size)) in secrets.iter().enumerate() {
        let host = tree.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(host.parent().unwrap()).unwrap();
        let mut content = String::new();
        let mut line = 0;
        while content.len() < *size {
            content.push_str(&format!("{token}|{index:02}|{path}|{line}\n"));
            line += 1;
        }
        content.truncate(*size);
        std::fs::write(&host, content).unwrap();
    }
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The Debian fixture's tree with `secrets` planted, as a whole-disk ext4 image made
/// with `mke2fs -d` and `features` (`-O` list, may be empty).
fn guest_image(dir: &Path, token: &str, secrets: &[(&str, usize)], features: &str) -> PathBuf {
    let tree = dir.join("tree");
    extract_tree(&fixture("debian").image, &tree);
    plant(&tree, token, secrets);
    let image = dir.join("guest.img");
    let mut args = vec!["-q", "-F", "-L", "root", "-t", "ext4", "-I", "256"];
    if !features.is_empty() {
        args.extend(["-O", features]);
    }
    args.extend(["-d", path_str(&tree), path_str(&image), "160M"]);
    run("mke2fs", &args);
    std::fs::remove_dir_all(&tree).unwrap();
    image
}

fn copy(image: &Path, label: &str) -> PathBuf {
    let copy = image.with_file_name(format!("{label}.img"));
    std::fs::copy(image, &copy).unwrap();
    copy
}

fn to_qcow2(image: &Path, label: &str) -> PathBuf {
    let qcow2 = image.with_file_name(format!("{label}.qcow2"));
    run(
        "qemu-img",
        &["convert", "-O", "qcow2", path_str(image), path_str(&qcow2)],
    );
    qcow2
}

/// Where the token occurs in the raw bytes of `image` (qcow2 converted first):
/// `(byte offset, index of the planted secret)`, scanning in chunks.
fn hits(image: &Path, token: &str) -> Vec<(u64, String)> {
    let raw = if image.extension().is_some_and(|e| e == "qcow2") {
        let raw = image.with_extension("scan.raw");
        run(
            "qemu-img",
            &["convert", "-O", "raw", path_str(image), path_str(&raw)],
        );
        raw
    } else {
        image.to_path_buf()
    };
    let needle = format!("{token}|");
    let needle = needle.as_bytes();
    // Room after the needle for the index that follows it.
    let keep = needle.len() + 2;
    let mut file = std::fs::File::open(&raw).unwrap();
    let mut found = Vec::new();
    let mut window: Vec<u8> = Vec::new();
    let mut base = 0u64; // disk offset of window[0]
    let mut chunk = vec![0u8; 8 << 20];
    loop {
        let n = file.read(&mut chunk).unwrap();
        window.extend_from_slice(&chunk[..n]);
        // Matches starting before `limit` are taken now; later ones stay in the
        // window for the next round (with the bytes after them).
        let limit = if n == 0 {
            window.len()
        } else {
            window.len().saturating_sub(keep)
        };
        let mut at = 0;
        while let Some(i) = find(&window[at..], needle) {
            let pos = at + i;
            if pos >= limit {
                break;
            }
            let rest = &window[pos + needle.len()..window.len().min(pos + keep)];
            let path = rest.split(|&b| b == b'|').next().unwrap_or_default();
            found.push((
                base + pos as u64,
                String::from_utf8_lossy(path).into_owned(),
            ));
            at = pos + 1;
        }
        if n == 0 {
            break;
        }
        window.drain(..limit);
        base += limit as u64;
    }
    if raw != image {
        std::fs::remove_file(raw).unwrap();
    }
    found
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let mut at = 0;
    while let Some(i) = haystack[at..].iter().position(|&b| b == needle[0]) {
        let pos = at + i;
        if haystack.len() - pos < needle.len() {
            return None;
        }
        if &haystack[pos..pos + needle.len()] == needle {
            return Some(pos);
        }
        at = pos + 1;
    }
    None
}

/// The planted paths found (of `secrets`), with how many times each.
fn paths_found(hits: &[(u64, String)], secrets: &[(&str, usize)]) -> BTreeMap<String, usize> {
    let mut found = BTreeMap::new();
    for (_, index) in hits {
        let path = index
            .parse::<usize>()
            .ok()
            .and_then(|i| secrets.get(i))
            .map_or_else(|| format!("index {index:?}"), |(path, _)| path.to_string());
        *found.entry(path).or_insert(0) += 1;
    }
    found
}

fn assert_no_hits(image: &Path, token: &str) {
    let hits = hits(image, token);
    assert!(
        hits.is_empty(),
        "{}: removed secrets still readable at (offset, file): {:?}",
        image.display(),
        &hits[..hits.len().min(20)]
    );
}

/// Every planted secret is in the image (the scan would catch one left behind).
fn assert_all_found(
    image: &Path,
    token: &str,
    secrets: &[(&str, usize)],
) -> BTreeMap<String, usize> {
    let found = paths_found(&hits(image, token), secrets);
    let missing: Vec<&str> = secrets
        .iter()
        .map(|(path, _)| *path)
        .filter(|path| !found.contains_key(*path))
        .collect();
    assert!(
        missing.is_empty(),
        "{}: without scrubbing these planted secrets should still be in the image: {missing:?}",
        image.display()
    );
    found
}

/// `e2fsck -fn` finds nothing to fix (the image is a whole-disk filesystem; a qcow2 is
/// converted first).
fn assert_fsck_clean(image: &Path) {
    if image.extension().is_some_and(|e| e == "qcow2") {
        common::assert_qemu_check_clean(image);
        let raw = image.with_extension("fsck.raw");
        run(
            "qemu-img",
            &["convert", "-O", "raw", path_str(image), path_str(&raw)],
        );
        run("e2fsck", &["-fn", path_str(&raw)]);
        std::fs::remove_file(raw).unwrap();
    } else {
        run("e2fsck", &["-fn", path_str(image)]);
    }
}

fn native_listing(image: &Path) -> Listing {
    let mut guest = NativeGuest::open_file(image).expect("open natively");
    let mut roots = guest.inspect().expect("inspect natively");
    assert_eq!(roots.len(), 1, "{}", image.display());
    guest.mount_os(&roots.remove(0)).expect("mount natively");
    listing(&mut guest)
}

fn assert_same_guest(scrubbed: &Path, kept: &Path) {
    assert_eq!(
        differences(&native_listing(scrubbed), &native_listing(kept)),
        BTreeSet::new(),
        "{} and {} list different guests",
        scrubbed.display(),
        kept.display()
    );
}

/// Gives `image` a journal whose one committed transaction holds a copy of the first
/// block of `path` (what `data=journal` leaves behind): `needs_recovery` is set.
fn journal_copy_of(image: &Path, path: &str) {
    let size = block_size(image);
    let block = first_block(image, path);
    let bytes = std::fs::read(image).unwrap();
    let at = block as usize * size;
    let data = image.with_extension("journal-data");
    std::fs::write(&data, &bytes[at..at + size]).unwrap();
    debugfs(
        image,
        &format!("jo\njw -b {block} {}\njc\n", path_str(&data)),
        true,
    );
    std::fs::remove_file(data).unwrap();
    let stats = debugfs(image, "stats -h\n", false);
    assert!(stats.contains("needs_recovery"), "{stats}");
}

#[test]
fn native_sysprep_leaves_no_removed_secret_in_the_image() {
    let dir = common::tempdir();
    let token = token();
    let base = guest_image(dir.path(), &token, &SECRETS, "");
    assert_all_found(&base, &token, &SECRETS);

    // qcow2: the zeros go through the qcow2 patch; raw: in place.
    let scrubbed = to_qcow2(&base, "scrubbed");
    let ran = sysprep(&scrubbed, &options(Scrub::Zero), BackendChoice::Native);
    assert_eq!(ran.backend, "native");
    let planted: usize = SECRETS.iter().map(|(_, size)| size).sum();
    assert!(
        ran.scrubbed_bytes >= planted as u64 && ran.scrubbed_journal_bytes > 0,
        "scrubbed {} bytes of data and {} of journal",
        ran.scrubbed_bytes,
        ran.scrubbed_journal_bytes
    );
    let kept = copy(&base, "kept");
    let ran_kept = sysprep(&kept, &options(Scrub::Keep), BackendChoice::Native);
    assert_eq!(
        (ran_kept.scrubbed_bytes, ran_kept.scrubbed_journal_bytes),
        (0, 0)
    );
    assert_all_found(&kept, &token, &SECRETS);
    assert_no_hits(&scrubbed, &token);
    assert_fsck_clean(&scrubbed);
    assert_fsck_clean(&kept);
    assert_same_guest(&scrubbed, &kept);

    // A committed journal copy of the RSA key's first block: the native backend
    // replays it (a no-op here) and must zero it in the log as well.
    let journaled = copy(&base, "journaled");
    journal_copy_of(&journaled, SECRETS[0].0);
    let journaled_kept = copy(&journaled, "journaled-kept");
    sysprep(&journaled, &options(Scrub::Zero), BackendChoice::Native);
    sysprep(
        &journaled_kept,
        &options(Scrub::Keep),
        BackendChoice::Native,
    );
    let found = assert_all_found(&journaled_kept, &token, &SECRETS);
    let unjournaled = paths_found(&hits(&kept, &token), &SECRETS);
    assert!(
        found[SECRETS[0].0] > unjournaled[SECRETS[0].0],
        "the journal copy is not in the image: {found:?} vs {unjournaled:?}"
    );
    assert_no_hits(&journaled, &token);
    assert_fsck_clean(&journaled);
    assert_same_guest(&journaled, &kept);
}

#[test]
fn native_sysprep_zeroes_inline_data_of_removed_files() {
    let dir = common::tempdir();
    let token = token();
    let base = guest_image(dir.path(), &token, &INLINE_SECRETS, "inline_data");
    for (path, _) in INLINE_SECRETS {
        let stat = debugfs(&base, &format!("stat {path}\n"), false);
        assert!(
            stat.contains("Size of inline data"),
            "{path}: not inline: {stat}"
        );
    }
    let scrubbed = copy(&base, "scrubbed");
    let kept = copy(&base, "kept");
    sysprep(
        &scrubbed,
        &removal_options(Scrub::Zero),
        BackendChoice::Native,
    );
    sysprep(&kept, &removal_options(Scrub::Keep), BackendChoice::Native);
    assert_all_found(&kept, &token, &INLINE_SECRETS);
    assert_no_hits(&scrubbed, &token);
    assert_fsck_clean(&scrubbed);
    assert_same_guest(&scrubbed, &kept);
}

#[test]
fn libguestfs_sysprep_leaves_no_removed_secret_in_the_image() {
    let dir = common::tempdir();
    let token = token();
    let base = guest_image(dir.path(), &token, &SECRETS, "");
    let scrubbed = copy(&base, "scrubbed");
    let kept = copy(&base, "kept");
    let ran = sysprep(&scrubbed, &options(Scrub::Zero), BackendChoice::Libguestfs);
    assert_eq!(ran.backend, "libguestfs");
    let planted: usize = SECRETS.iter().map(|(_, size)| size).sum();
    assert!(
        ran.scrubbed_bytes >= planted as u64,
        "scrubbed {} bytes",
        ran.scrubbed_bytes
    );
    let ran_kept = sysprep(&kept, &options(Scrub::Keep), BackendChoice::Libguestfs);
    assert_eq!(ran_kept.scrubbed_bytes, 0);
    assert_all_found(&kept, &token, &SECRETS);
    assert_no_hits(&scrubbed, &token);
    assert_fsck_clean(&scrubbed);
    assert_same_guest(&scrubbed, &kept);
}

/// How often each of `needles` occurs in the raw bytes of `image` (qcow2 converted
/// first), scanning in chunks.
fn count_needles(image: &Path, needles: &[Vec<u8>]) -> Vec<usize> {
    let raw = image.with_extension("count.raw");
    run(
        "qemu-img",
        &["convert", "-O", "raw", path_str(image), path_str(&raw)],
    );
    let longest = needles.iter().map(Vec::len).max().unwrap_or(1);
    let mut file = std::fs::File::open(&raw).unwrap();
    let mut counts = vec![0; needles.len()];
    let mut window: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 8 << 20];
    loop {
        let n = file.read(&mut chunk).unwrap();
        window.extend_from_slice(&chunk[..n]);
        // Matches starting before `limit` are counted now, the rest next round.
        let limit = if n == 0 {
            window.len()
        } else {
            window.len().saturating_sub(longest)
        };
        for (needle, count) in needles.iter().zip(&mut counts) {
            let mut at = 0;
            while let Some(i) = find(&window[at..], needle) {
                if at + i >= limit {
                    break;
                }
                *count += 1;
                at += i + 1;
            }
        }
        if n == 0 {
            break;
        }
        window.drain(..limit);
    }
    std::fs::remove_file(raw).unwrap();
    counts
}

/// The cached fixture `name` after template sysprep (defaults; `auto` backend: native
/// for ext4 guests, libguestfs for the XFS-on-LVM ones): the bytes of its SSH host
/// private keys and Kerberos keytab (as `scripts/make-fixtures` writes them) are in the
/// source image and nowhere in the result.
fn fixture_secrets_are_gone(name: &'static str, backend: &str) {
    let dir = common::tempdir();
    let fixture = fixture(name);
    let fqdn = fixture.fact("identity", "fqdn");
    let mut needles: Vec<Vec<u8>> = ["rsa", "ecdsa", "ed25519"]
        .iter()
        .map(|t| format!("FAKE imgferry fixture {t} host key of {fqdn}").into_bytes())
        .collect();
    needles.push(format!("\x05\x02host/{fqdn}@EXAMPLE.ORG").into_bytes());
    let before = count_needles(&fixture.image, &needles);
    assert!(
        before.iter().all(|&n| n > 0),
        "{name}: the source lacks some secret: {before:?}"
    );
    let image = fixture.standalone_copy(dir.path(), "template");
    let options = Options {
        operations: sysprep::select(&[Words::Operations("defaults".to_owned())]).unwrap(),
        ..Options::default()
    };
    let ran = sysprep(&image, &options, BackendChoice::Auto);
    assert_eq!(ran.backend, backend, "{name}: {}", ran.reason);
    assert!(ran.scrubbed_bytes > 0, "{name}: nothing scrubbed");
    let after = count_needles(&image, &needles);
    assert_eq!(
        after,
        vec![0; needles.len()],
        "{name}: removed secrets still in the image (counts of rsa, ecdsa, ed25519 key, keytab)"
    );
    common::assert_qemu_check_clean(&image);
}

#[test]
fn debian_fixture_secrets_are_gone() {
    fixture_secrets_are_gone("debian", "native");
}

#[test]
fn ubuntu_fixture_secrets_are_gone() {
    fixture_secrets_are_gone("ubuntu", "native");
}

#[test]
fn rocky9_xfs_fixture_secrets_are_gone() {
    fixture_secrets_are_gone("rocky9", "libguestfs");
}
