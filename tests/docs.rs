//! The documentation checked against the code, so they cannot drift: docs/cli.md is what
//! `imgferry generate reference` writes; the sysprep operation table is
//! `imgferry sysprep --list-operations`. No appliance, no cloud.

mod common;

use serde_json::Value;

#[test]
fn readme_lists_every_operation() {
    let out = common::run_ok(common::imgferry().args(["--json", "sysprep", "--list-operations"]));
    let value: Value = serde_json::from_str(out.trim()).expect("one JSON result");
    let operations = value["operations"].as_array().expect("operations");
    assert!(operations.len() >= 40, "{}", operations.len());
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    for op in operations {
        let row = format!(
            "| `{}` | {} | {} |",
            op["name"].as_str().unwrap(),
            if op["default"] == true { "yes" } else { "no" },
            op["description"].as_str().unwrap()
        );
        assert!(readme.contains(&row), "README lacks or misstates: {row}");
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
