//! `imgferry verify` and `imgferry manifest` against coreutils' md5sum/sha*sum as
//! oracles, on files of edge sizes, with damaged files and hostile manifests.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{imgferry, path_str, random_bytes, run, run_ok, tempdir};
use serde_json::Value;

/// The chunk size the tests use instead of 64 MiB, so files stay small.
const CHUNK: usize = 64 * 1024;
const CHUNK_ARG: &str = "64K";

/// `TOOL FILE` from coreutils: the hex digest.
fn oracle(tool: &str, file: &Path) -> String {
    let out = run_ok(Command::new(tool).arg(file));
    out.split_whitespace().next().expect("digest").to_owned()
}

fn write_file(dir: &Path, name: &str, len: usize, seed: u64) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, random_bytes(len, seed)).expect("write test file");
    path
}

/// Runs imgferry with `--json` and returns (exit code, the result object, stderr).
fn json_run(args: &[&str]) -> (i32, Value, String) {
    let out = run(imgferry().arg("--json").args(args));
    let code = out.status.code().expect("exit code");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let result = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|v| v["type"] == "result")
        .unwrap_or(Value::Null);
    (
        code,
        result,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn plain_run(args: &[&str]) -> Output {
    run(imgferry().args(args))
}

fn write_manifest(file: &Path, manifest: &Path, algorithm: &str) {
    run_ok(imgferry().args([
        "manifest",
        path_str(file),
        "-o",
        path_str(manifest),
        "--chunk-size",
        CHUNK_ARG,
        "--algorithm",
        algorithm,
    ]));
}

/// 0 bytes, 1 byte, exactly one chunk, one chunk + 1, several chunks with a short last
/// one, and more than one 4 MiB hashing block.
const SIZES: [usize; 6] = [
    0,
    1,
    CHUNK,
    CHUNK + 1,
    5 * CHUNK + 123,
    (4 << 20) + 3 * CHUNK + 17,
];

#[test]
fn printed_digests_match_coreutils() {
    let dir = tempdir();
    for (i, size) in SIZES.into_iter().enumerate() {
        let file = write_file(dir.path(), &format!("f{size}"), size, i as u64 + 1);
        let (code, result, stderr) = json_run(&[
            "verify",
            path_str(&file),
            "--print",
            "md5,sha256,sha384,sha512",
        ]);
        assert_eq!(code, 0, "size {size}: {stderr}");
        assert_eq!(result["size"], size as u64);
        for algorithm in ["md5", "sha256", "sha384", "sha512"] {
            let want = oracle(&format!("{algorithm}sum"), &file);
            assert_eq!(
                result["digests"][algorithm],
                want.as_str(),
                "{algorithm} of {size} bytes"
            );
        }
    }
}

#[test]
fn expected_digests_from_coreutils_verify() {
    let dir = tempdir();
    for (i, size) in SIZES.into_iter().enumerate() {
        let file = write_file(dir.path(), &format!("f{size}"), size, i as u64 + 100);
        let (md5, sha512) = (oracle("md5sum", &file), oracle("sha512sum", &file));
        let out = plain_run(&[
            "verify",
            path_str(&file),
            "--md5",
            &md5,
            "--sha512",
            &sha512,
        ]);
        assert_eq!(out.status.code(), Some(0), "size {size}: {out:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("md5 OK") && stdout.contains("sha512 OK"),
            "{stdout}"
        );
    }
}

#[test]
fn wrong_expected_digest_fails_naming_it() {
    let dir = tempdir();
    let file = write_file(dir.path(), "f", 3 * CHUNK, 7);
    let md5 = oracle("md5sum", &file);
    let mut sha512 = oracle("sha512sum", &file);
    sha512.replace_range(0..1, if sha512.starts_with('0') { "1" } else { "0" });
    let out = plain_run(&[
        "verify",
        path_str(&file),
        "--md5",
        &md5,
        "--sha512",
        &sha512,
    ]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("md5 OK"), "{stdout}");
    assert!(stdout.contains("sha512 FAILED"), "{stdout}");
    assert!(
        stderr.contains("sha512 differs") && !stderr.contains("md5 differs"),
        "{stderr}"
    );

    let (code, result, _) = json_run(&["verify", path_str(&file), "--sha512", &sha512]);
    assert_eq!(code, 3);
    assert_eq!(result["ok"], false);
    assert_eq!(result["checks"][0]["algorithm"], "sha512");
    assert_eq!(result["checks"][0]["ok"], false);
}

/// The manifest's chunk digests equal sha256sum (and blake3) of each chunk's bytes.
#[test]
fn manifest_chunks_match_per_chunk_oracles() {
    let dir = tempdir();
    for (i, size) in SIZES.into_iter().take(5).enumerate() {
        let data = random_bytes(size, i as u64 + 200);
        let file = dir.path().join(format!("f{size}"));
        std::fs::write(&file, &data).unwrap();
        for algorithm in ["sha256", "blake3"] {
            let manifest = dir.path().join(format!("m{size}.{algorithm}"));
            write_manifest(&file, &manifest, algorithm);
            let json: Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
            assert_eq!(json["version"], 1);
            assert_eq!(json["file_size"], size as u64);
            let chunks = json["chunks"].as_array().expect("chunks");
            assert_eq!(chunks.len(), size.div_ceil(CHUNK), "size {size}");
            for (k, piece) in data.chunks(CHUNK).enumerate() {
                let want = if algorithm == "sha256" {
                    let piece_file = dir.path().join("piece");
                    std::fs::write(&piece_file, piece).unwrap();
                    oracle("sha256sum", &piece_file)
                } else {
                    blake3::hash(piece).to_hex().to_string()
                };
                assert_eq!(chunks[k], want.as_str(), "{algorithm} chunk {k} of {size}");
            }
            let out = plain_run(&["verify", path_str(&file), "--manifest", path_str(&manifest)]);
            assert_eq!(out.status.code(), Some(0), "{out:?}");
        }
    }
}

#[test]
fn manifest_records_whole_file_digests_and_is_written_atomically() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempdir();
    let file = write_file(dir.path(), "f", 3 * CHUNK + 5, 11);
    let manifest = dir.path().join("out").join("m.json");
    std::fs::create_dir(manifest.parent().unwrap()).unwrap();
    let args = [
        "manifest",
        path_str(&file),
        "-o",
        path_str(&manifest),
        "--chunk-size",
        CHUNK_ARG,
    ];
    run_ok(imgferry().args(args).args(["--digest", "md5,sha512"]));
    let json: Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    assert_eq!(json["digests"]["md5"], oracle("md5sum", &file).as_str());
    assert_eq!(
        json["digests"]["sha512"],
        oracle("sha512sum", &file).as_str()
    );
    assert_eq!(json["chunks"].as_array().map(Vec::len), Some(4));
    let mode = std::fs::metadata(&manifest).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let names: Vec<_> = std::fs::read_dir(manifest.parent().unwrap())
        .unwrap()
        .collect();
    assert_eq!(names.len(), 1, "only the manifest, no temporary file");
}

/// A byte flipped in chunk k is reported as chunk k with its byte range, exit 3, both
/// by the parallel manifest check and by the one-read path that also computes sha512.
#[test]
fn flipped_byte_is_reported_in_its_chunk() {
    let dir = tempdir();
    let mut data = random_bytes(6 * CHUNK + 100, 21);
    let file = dir.path().join("f");
    std::fs::write(&file, &data).unwrap();
    let manifest = dir.path().join("m");
    write_manifest(&file, &manifest, "blake3");
    let sha512 = oracle("sha512sum", &file);
    for k in [0usize, 3, 6] {
        let mut damaged = data.clone();
        let at = k * CHUNK + 50;
        damaged[at] ^= 0x40;
        std::fs::write(&file, &damaged).unwrap();
        for extra in [&[][..], &["--sha512", sha512.as_str()][..]] {
            let mut args = vec!["verify", path_str(&file), "--manifest", path_str(&manifest)];
            args.extend_from_slice(extra);
            let (code, result, stderr) = json_run(&args);
            assert_eq!(code, 3, "chunk {k} {extra:?}: {stderr}");
            let faults = result["manifest"]["faults"].as_array().expect("faults");
            assert_eq!(faults.len(), 1, "{result}");
            assert_eq!(faults[0]["fault"], "differs");
            assert_eq!(faults[0]["first_chunk"], k as u64);
            assert_eq!(faults[0]["last_chunk"], k as u64);
            assert_eq!(faults[0]["start"], (k * CHUNK) as u64);
            let end = ((k + 1) * CHUNK).min(data.len());
            assert_eq!(faults[0]["end"], end as u64);
            assert!(stderr.contains(&format!("chunk {k} ")), "{stderr}");
        }
    }
    data[CHUNK] ^= 1;
    data[4 * CHUNK] ^= 1;
    std::fs::write(&file, &data).unwrap();
    let out = plain_run(&["verify", path_str(&file), "--manifest", path_str(&manifest)]);
    assert_eq!(out.status.code(), Some(3));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("chunk 1: bytes 65536..131072 differs"),
        "{stdout}"
    );
    assert!(
        stdout.contains("chunk 4: bytes 262144..327680 differs"),
        "{stdout}"
    );
}

#[test]
fn truncated_or_extended_file_against_manifest() {
    let dir = tempdir();
    let data = random_bytes(5 * CHUNK, 31);
    let file = dir.path().join("f");
    std::fs::write(&file, &data).unwrap();
    let manifest = dir.path().join("m");
    write_manifest(&file, &manifest, "blake3");

    std::fs::write(&file, &data[..2 * CHUNK + 10]).unwrap();
    let (code, result, stderr) =
        json_run(&["verify", path_str(&file), "--manifest", path_str(&manifest)]);
    assert_eq!(code, 3, "{stderr}");
    let m = &result["manifest"];
    assert_eq!(m["actual_size"], (2 * CHUNK + 10) as u64);
    assert_eq!(m["expected_size"], (5 * CHUNK) as u64);
    let faults = m["faults"].as_array().expect("faults");
    // chunk 2 is partial (differs), chunks 3-4 are missing
    assert_eq!(faults[0]["fault"], "differs");
    assert_eq!(faults[0]["first_chunk"], 2);
    assert_eq!(faults[1]["fault"], "missing");
    assert_eq!(
        (
            faults[1]["first_chunk"].as_u64(),
            faults[1]["last_chunk"].as_u64()
        ),
        (Some(3), Some(4))
    );
    assert!(
        stderr.contains("the file is 131082 bytes, the manifest describes 327680"),
        "{stderr}"
    );

    let mut longer = data.clone();
    longer.extend_from_slice(b"tail");
    std::fs::write(&file, &longer).unwrap();
    let (code, result, _) =
        json_run(&["verify", path_str(&file), "--manifest", path_str(&manifest)]);
    assert_eq!(code, 3);
    assert_eq!(result["manifest"]["faults"][0]["fault"], "extra");
    assert_eq!(result["manifest"]["faults"][0]["first_chunk"], 5);
}

#[test]
fn malformed_manifests_are_clear_errors() {
    let dir = tempdir();
    let file = write_file(dir.path(), "f", 2 * CHUNK, 41);
    let good = dir.path().join("good");
    write_manifest(&file, &good, "blake3");
    let text = std::fs::read_to_string(&good).unwrap();
    let first_chunk = text
        .split('"')
        .find(|s| s.len() == 64)
        .expect("a chunk digest")
        .to_owned();
    let cases: [(&str, String, &str); 5] = [
        ("bad json", "{\"format\": ".to_owned(), "EOF while parsing"),
        (
            "version",
            text.replace("\"version\": 1", "\"version\": 7"),
            "version 7 is not supported",
        ),
        (
            "too many chunks",
            text.replace(&first_chunk, &format!("{first_chunk}\", \"{first_chunk}")),
            "lists 3 chunk digests, but a 131072-byte file has 2 chunks",
        ),
        (
            "absurd size",
            text.replace(
                "\"file_size\": 131072",
                "\"file_size\": 18446744073709551615",
            ),
            "out of range",
        ),
        (
            "not hex",
            text.replacen(&first_chunk, &"g".repeat(64), 1),
            "not a hex digest",
        ),
    ];
    for (name, content, reason) in cases {
        let manifest = dir.path().join("bad");
        std::fs::write(&manifest, content).unwrap();
        let out = plain_run(&["verify", path_str(&file), "--manifest", path_str(&manifest)]);
        assert_eq!(out.status.code(), Some(1), "{name}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("is not a valid imgferry manifest"),
            "{name}: {stderr}"
        );
        assert!(stderr.contains(reason), "{name}: {stderr}");
    }
}

#[test]
fn usage_and_io_errors() {
    let dir = tempdir();
    let file = write_file(dir.path(), "f", 10, 51);
    // nothing to verify, a digest of the wrong length, not hex, a bad chunk size
    for args in [
        vec!["verify", path_str(&file)],
        vec!["verify", path_str(&file), "--sha512", "abcd"],
        vec!["verify", path_str(&file), "--md5", &"x".repeat(32)],
        vec![
            "manifest",
            path_str(&file),
            "-o",
            "m",
            "--chunk-size",
            "1000",
        ],
    ] {
        let out = plain_run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    }
    let missing = dir.path().join("missing.img");
    let out = plain_run(&["verify", path_str(&missing), "--print", "md5"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot open") && stderr.contains("missing.img"),
        "{stderr}"
    );
}

#[test]
fn print_format_is_checkable_by_coreutils() {
    let dir = tempdir();
    let file = write_file(dir.path(), "f", CHUNK + 3, 61);
    let out = run_ok(imgferry().args(["verify", path_str(&file), "--print", "sha256,md5"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with("MD5 (") && lines[1].starts_with("SHA256 ("),
        "{out}"
    );
    let tags = dir.path().join("sums");
    std::fs::write(&tags, lines[1]).unwrap();
    run_ok(Command::new("sha256sum").arg("-c").arg(&tags));
}
