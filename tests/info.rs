//! `imgferry info` against images made by qemu-img.

mod common;

use common::*;
use serde_json::Value;

fn info_json(file: &std::path::Path) -> Value {
    let out = run_ok(imgferry().args(["--json", "info", path_str(file)]));
    serde_json::from_str(out.trim()).expect("one JSON line")
}

#[test]
fn qcow2_v2_and_v3_headers_match_qemu_img() {
    let dir = tempdir();
    for (compat, version) in [("0.10", 2), ("1.1", 3)] {
        let file = path_in(dir.path(), &format!("{compat}.qcow2"));
        let opts = format!("compat={compat},cluster_size=2097152");
        qemu_img(&[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-o",
            &opts,
            path_str(&file),
            "3G",
        ]);
        let ours = info_json(&file);
        let theirs = qemu_img_info(&file);
        assert_eq!(ours["format"], "qcow2");
        assert_eq!(ours["virtual_size"], theirs["virtual-size"]);
        assert_eq!(ours["qcow2"]["version"], version);
        assert_eq!(
            ours["qcow2"]["compat"],
            theirs["format-specific"]["data"]["compat"]
        );
        assert_eq!(ours["qcow2"]["cluster_size"], theirs["cluster-size"]);
    }
}

#[test]
fn raw_is_the_fallback_and_other_formats_are_named() {
    let dir = tempdir();
    let raw = path_in(dir.path(), "disk.qcow2"); // the name must not matter
    std::fs::write(&raw, random_bytes(65536, 7)).unwrap();
    assert_eq!(info_json(&raw)["format"], "raw");
    for format in ["vmdk", "vhdx", "vdi", "vpc"] {
        let file = path_in(dir.path(), &format!("x.{format}"));
        qemu_img(&["create", "-q", "-f", format, path_str(&file), "16M"]);
        let out = run(imgferry().args(["info", path_str(&file)]));
        assert_eq!(out.status.code(), Some(1), "{format}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let name = if format == "vpc" { "vhd" } else { format };
        assert!(
            stderr.contains(&format!("{name} image")),
            "{format}: {stderr}"
        );
    }
}
