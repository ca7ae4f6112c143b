//! The documentation checked against the code, so they cannot drift: docs/cli.md is what
//! `imgferry generate reference` writes; the sysprep operation table is
//! `imgferry sysprep --list-operations`. No appliance, no cloud.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

#[test]
fn sysprep_doc_lists_every_operation() {
    let out = common::run_ok(common::imgferry().args(["--json", "sysprep", "--list-operations"]));
    let value: Value = serde_json::from_str(out.trim()).expect("one JSON result");
    let operations = value["operations"].as_array().expect("operations");
    assert!(operations.len() >= 40, "{}", operations.len());
    let doc = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/commands/sysprep.md");
    let readme = std::fs::read_to_string(doc).expect("docs/commands/sysprep.md");
    for op in operations {
        let row = format!(
            "| `{}` | {} | {} |",
            op["name"].as_str().unwrap(),
            if op["default"] == true { "yes" } else { "no" },
            op["description"].as_str().unwrap()
        );
        assert!(
            readme.contains(&row),
            "docs/commands/sysprep.md lacks or misstates: {row}"
        );
    }
}

#[test]
fn list_operations_marks_defaults_like_virt_sysprep() {
    let out = common::run_ok(common::imgferry().args(["sysprep", "--list-operations"]));
    let line = |name: &str| {
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} not listed"))
            .to_owned()
    };
    assert!(line("machine-id").contains(" * "));
    assert!(!line("firewall-rules").contains(" * "));
}

#[test]
fn unknown_and_unimplemented_words_are_usage_errors() {
    for word in ["no-such-op", "script"] {
        let out = common::run(common::imgferry().args(["sysprep", "x.qcow2", "--enable", word]));
        assert_eq!(out.status.code(), Some(2), "{word}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(word) && stderr.contains("--list-operations"),
            "{stderr}"
        );
    }
    let out =
        common::run(common::imgferry().args(["sysprep", "x.qcow2", "--hostname", "bad_name"]));
    assert_eq!(out.status.code(), Some(2));
}

/// Every operation virt-sysprep lists is known here, with its default (`script` is
/// refused: nothing runs in the guest). Reads `virt-sysprep --list-operations`: no
/// appliance.
#[test]
fn defaults_match_virt_sysprep() {
    let theirs = std::process::Command::new("virt-sysprep")
        .arg("--list-operations")
        .output()
        .expect("virt-sysprep must be installed (scripts/install-deps --guestfs)");
    assert!(theirs.status.success());
    let ours = common::run_ok(common::imgferry().args(["--json", "sysprep", "--list-operations"]));
    let ours: Value = serde_json::from_str(ours.trim()).expect("one JSON result");
    let ours = ours["operations"].as_array().expect("operations");
    let text = String::from_utf8_lossy(&theirs.stdout);
    let mut compared = 0;
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let Some(name) = words.next() else { continue };
        if name == "script" {
            continue;
        }
        let default = words.next() == Some("*");
        let op = ours
            .iter()
            .find(|op| op["name"] == name)
            .unwrap_or_else(|| panic!("virt-sysprep's {name} is missing"));
        assert_eq!(
            op["default"], default,
            "{name}: default differs from virt-sysprep"
        );
        compared += 1;
    }
    assert!(compared >= 42, "{compared}");
}

#[test]
fn user_account_flags_need_the_operation() {
    let out = common::run(common::imgferry().args([
        "sysprep",
        "x.qcow2",
        "--keep-user-accounts",
        "alice",
    ]));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("user-account"), "{stderr}");
    let out = common::run(common::imgferry().args([
        "sysprep",
        "x.qcow2",
        "--enable",
        "user-account",
        "--remove-user-accounts",
        "bob,",
    ]));
    assert_eq!(out.status.code(), Some(2), "an empty user name");
}

#[test]
fn cli_reference_is_current() {
    let dir = common::tempdir();
    let fresh = dir.path().join("cli.md");
    common::run_ok(
        common::imgferry()
            .arg("-q")
            .args(["generate", "reference"])
            .arg(&fresh),
    );
    let fresh = std::fs::read_to_string(&fresh).unwrap();
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/cli.md"))
        .unwrap_or_default();
    assert!(
        committed == fresh,
        "docs/cli.md is stale: refresh it with `cargo run -q -- generate reference docs/cli.md`"
    );
    for command in ["migrate", "template", "images list", "sysprep"] {
        assert!(
            fresh.contains(&format!("\n## imgferry {command}\n")),
            "{command}"
        );
    }
}

/// Every event kind in `src/`: the string literals passed to `Event::new` or to a helper
/// returning an `Event` whose first parameter is `kind: &'static str`.
fn emitted_event_kinds() -> BTreeSet<String> {
    fn files(dir: &Path, into: &mut Vec<(PathBuf, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files(&path, into);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                into.push((path, text));
            }
        }
    }
    let mut sources = Vec::new();
    files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut sources,
    );
    let mut kinds = BTreeSet::new();
    for (path, text) in &sources {
        // Helpers are private: their calls are in the file that defines them.
        let mut openers = vec!["Event::new(".to_owned()];
        for (at, _) in text.match_indices("kind: &'static str") {
            let head = &text[..at];
            let Some(fn_at) = head.rfind("fn ") else {
                continue;
            };
            let Some((name, params)) = head[fn_at + 3..].split_once('(') else {
                continue;
            };
            let returns = text[at..].split('{').next().unwrap_or_default();
            let first = params.trim().is_empty() || params.trim() == "&self,";
            if first && returns.contains("-> Event") {
                openers.push(format!("{name}("));
            }
        }
        for (index, opener) in openers.iter().enumerate() {
            for (at, _) in text.match_indices(opener.as_str()) {
                let rest = text[at + opener.len()..].trim_start();
                if let Some(literal) = rest.strip_prefix('"') {
                    kinds.insert(literal[..literal.find('"').unwrap()].to_owned());
                } else if index == 0 {
                    // Only a helper hands its own `kind` on; anything else would hide
                    // kinds from this test.
                    assert!(
                        rest.starts_with("kind,"),
                        "{}: an event kind that is not a string literal: {}",
                        path.display(),
                        &rest[..rest.len().min(40)]
                    );
                }
            }
        }
    }
    kinds
}

#[test]
fn json_schema_documents_every_event_kind_the_code_emits() {
    let kinds = emitted_event_kinds();
    assert!(kinds.len() >= 25, "{kinds:?}");
    assert!(kinds.contains("cloud.authenticated") && kinds.contains("sysprep.change"));
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/json.md"))
        .expect("docs/json.md");
    let documented: BTreeSet<String> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once("` |"))
        .map(|(kind, _)| kind.to_owned())
        .filter(|kind| kind.contains('.'))
        .collect();
    let missing: Vec<_> = kinds.difference(&documented).collect();
    assert!(missing.is_empty(), "docs/json.md lacks events: {missing:?}");
    let stale: Vec<_> = documented.difference(&kinds).collect();
    assert!(
        stale.is_empty(),
        "docs/json.md lists events never emitted: {stale:?}"
    );
}
