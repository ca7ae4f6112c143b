//! What packaging ships besides the binary, generated from the clap definitions:
//! `scripts/install` lays out a man page per visible command and bash/zsh/fish
//! completions that know the commands and the global flags.

mod common;

use std::path::Path;
use std::process::Command;

/// The visible commands, as `imgferry --help` lists them.
fn commands() -> Vec<String> {
    let help = common::run_ok(common::imgferry().arg("--help"));
    help.lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn install_lays_out_man_pages_and_completions_from_the_binary() {
    let dir = common::tempdir();
    let root = dir.path().join("root");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install");
    common::run_ok(Command::new(script).args([
        "--binary",
        env!("CARGO_BIN_EXE_imgferry"),
        "--prefix",
        "/usr",
        "--destdir",
        common::path_str(&root),
    ]));
    let usr = root.join("usr");
    assert!(usr.join("bin/imgferry").is_file());

    let commands = commands();
    assert!(commands.len() >= 13, "{commands:?}");
    let man = usr.join("share/man/man1");
    for name in ["imgferry".to_owned()]
        .into_iter()
        .chain(commands.iter().map(|c| format!("imgferry-{c}")))
        .chain(["imgferry-images-list".into(), "imgferry-images-show".into()])
    {
        let page = man.join(format!("{name}.1.gz"));
        let text = common::run_ok(Command::new("zcat").arg(&page));
        assert!(text.starts_with(".ie"), "{name}: not roff: {}", &text[..40]);
        assert!(text.contains(&format!(".TH {name} 1")), "{name}: no title");
    }
    assert!(
        !man.join("imgferry-generate.1.gz").exists(),
        "hidden command documented"
    );
    let migrate = common::run_ok(Command::new("zcat").arg(man.join("imgferry-migrate.1.gz")));
    assert!(
        migrate.contains("\\-\\-to\\-file"),
        "migrate page lacks --to-file"
    );

    let share = usr.join("share");
    let bash = share.join("bash-completion/completions/imgferry");
    common::run_ok(Command::new("bash").arg("-n").arg(&bash));
    for file in [
        bash,
        share.join("zsh/site-functions/_imgferry"),
        share.join("fish/vendor_completions.d/imgferry.fish"),
    ] {
        let text = std::fs::read_to_string(&file).unwrap();
        for word in commands.iter().map(String::as_str).chain(["os-cloud"]) {
            assert!(text.contains(word), "{}: no {word}", file.display());
        }
        assert!(
            !text.contains("generate"),
            "{}: hidden command",
            file.display()
        );
    }
}

#[test]
fn debian_package_unpacks_and_runs() {
    let dir = common::tempdir();
    let out = dir.path().join("out");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/package-deb");
    // The test's own binary, uncompressed: no release build, no xz inside the test.
    let deb = common::run_ok(Command::new(script).args([
        "--binary",
        env!("CARGO_BIN_EXE_imgferry"),
        "--out",
        common::path_str(&out),
        "--compression",
        "none",
    ]));
    let deb = Path::new(deb.trim()).to_owned();
    assert!(deb.starts_with(&out) && deb.is_file(), "{}", deb.display());

    let field = |name: &str| {
        let value = common::run_ok(Command::new("dpkg-deb").arg("-f").arg(&deb).arg(name));
        value.trim().to_owned()
    };
    assert_eq!(field("Package"), "imgferry");
    assert_eq!(field("Version"), env!("CARGO_PKG_VERSION"));
    let arch = common::run_ok(Command::new("dpkg").arg("--print-architecture"));
    assert_eq!(field("Architecture"), arch.trim());
    let depends = field("Depends");
    assert!(depends.contains("libc6 (>="), "{depends}");
    assert!(
        !depends.contains("guestfs"),
        "libguestfs must stay optional: {depends}"
    );
    assert!(field("Recommends").contains("libguestfs0"));

    let root = dir.path().join("root");
    common::run_ok(Command::new("dpkg").arg("-x").arg(&deb).arg(&root));
    let binary = root.join("usr/bin/imgferry");
    let ldd = common::run_ok(Command::new("ldd").arg(&binary));
    assert!(ldd.contains("libc.so.6"), "{ldd}");
    assert!(!ldd.contains("not found"), "{ldd}");
    assert!(!ldd.contains("guestfs"), "linked to libguestfs: {ldd}");
    for path in [
        "usr/share/man/man1/imgferry-migrate.1.gz",
        "usr/share/bash-completion/completions/imgferry",
        "usr/share/zsh/vendor-completions/_imgferry",
        "usr/share/fish/vendor_completions.d/imgferry.fish",
        "usr/share/doc/imgferry/copyright",
    ] {
        assert!(root.join(path).is_file(), "{path} missing");
    }

    let version = common::run_ok(Command::new(&binary).arg("--version"));
    assert_eq!(
        version.trim(),
        concat!("imgferry ", env!("CARGO_PKG_VERSION"))
    );
    let image = dir.path().join("small.qcow2");
    common::qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        common::path_str(&image),
        "16M",
    ]);
    let info = common::run_ok(Command::new(&binary).args(["--json", "info"]).arg(&image));
    let info: serde_json::Value = serde_json::from_str(info.trim()).unwrap();
    assert_eq!(info["format"], "qcow2", "{info}");
    assert_eq!(info["virtual_size"], 16 << 20, "{info}");
}

/// `scripts/install-deps` prints one line per step; apt's output goes to a log file that
/// is shown only when a step fails. apt-get, dpkg-query and sudo are stand-ins here, so
/// nothing is installed: every package looks missing and apt-get fails.
#[test]
fn install_deps_keeps_apt_output_in_a_log_shown_on_failure() {
    let dir = common::tempdir();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let shims = [
        (
            "apt-get",
            "echo \"apt says: $*\"; echo 'E: no network here'; exit 100",
        ),
        ("dpkg-query", "exit 1"),
        ("sudo", "exec \"$@\""),
    ];
    for (name, body) in shims {
        let path = bin.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        let mut perms = std::fs::metadata(&path).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&path, perms).unwrap();
    }
    let log = dir.path().join("apt.log");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install-deps");
    let out = common::run(
        Command::new(script)
            .env("PATH", path)
            .env("IMGFERRY_INSTALL_LOG", &log),
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.lines().all(|l| l.starts_with("install-deps: ")
            || l.is_empty()
            || l.starts_with("### ")
            || l.starts_with("apt says: ")
            || l.starts_with("E: ")),
        "{stderr}"
    );
    assert!(stderr.contains("install-deps: failed: apt-get"), "{stderr}");
    assert!(
        stderr.contains("E: no network here"),
        "the log's tail is shown: {stderr}"
    );
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("apt says: "), "{logged}");
}
