//! libguestfs is loaded at run time, only by `sysprep`: the binary does not link it
//! (so `info`, `convert`, `amend`, ... start without its ~60 libraries), and a
//! `sysprep` on a machine without it fails clearly with an install hint.

mod common;

use common::{imgferry, path_str, run, tempdir};

#[test]
fn the_binary_does_not_link_libguestfs() {
    let out = run(std::process::Command::new("ldd").arg(env!("CARGO_BIN_EXE_imgferry")));
    let libraries = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "ldd failed: {out:?}");
    assert!(libraries.contains("libc.so"), "{libraries}");
    assert!(!libraries.contains("guestfs"), "{libraries}");
    // And a command that works does not load it either.
    let version = run(imgferry().arg("--version"));
    assert!(version.status.success());
}

#[test]
fn sysprep_without_libguestfs_says_what_to_install() {
    let dir = tempdir();
    let image = dir.path().join("disk.raw");
    std::fs::write(&image, vec![0u8; 1 << 20]).expect("write image");
    // Hide the library in a private mount namespace: /dev/null over libguestfs.so.0
    // (wherever the loader finds it) makes dlopen fail as if it were not installed.
    let script = format!(
        "lib=$(ldconfig -p | awk '/libguestfs\\.so\\.0 /{{print $NF; exit}}'); \
         if [ -n \"$lib\" ]; then mount --bind /dev/null \"$lib\" || exit 77; fi; \
         exec '{bin}' sysprep --dry-run '{image}'",
        bin = env!("CARGO_BIN_EXE_imgferry"),
        image = path_str(&image),
    );
    let mut attempt = None;
    for flags in ["-m", "-rm"] {
        let out = run(std::process::Command::new("unshare").args([flags, "sh", "-c", &script]));
        if out.status.code() != Some(77) {
            attempt = Some(out);
            break;
        }
    }
    let Some(out) = attempt else {
        eprintln!("skipping: no mount namespace to hide libguestfs in on this machine");
        return;
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: libguestfs is not available: cannot load libguestfs.so.0"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: install libguestfs-tools"),
        "{stderr}"
    );
}
