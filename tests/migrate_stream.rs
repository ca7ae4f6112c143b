//! One-pass streaming `migrate`/`template` from c1's Glance to `--to-file` (issue 14,
//! phase 3): the Debian fixture streamed gives the same guest files as the staged
//! pipeline (`--staged`) for the same request, `qemu-img check` clean; the work dir holds
//! the state only (its peak size is measured while the stream runs); a store that ignores
//! `Range` (the fault proxy strips it) falls back to staged and says why; a byte flipped
//! in the one GET fails verification with exit 3 and leaves no output file.

mod common;
mod sysprep_support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::dev_cloud::{clean_env, dev_cloud};
use common::fault_proxy::{Fault, FaultProxy, Rule};
use common::image_guard::{create_image, ImageGuard};
use common::path_str;
use imgferry::guest::native::NativeGuest;
use imgferry::guest::GuestFs;
use serde_json::Value;
use sysprep_support::{fixture, listing};

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .collect()
    }

    fn mode(&self) -> Value {
        let modes: Vec<Value> = self
            .lines()
            .into_iter()
            .filter(|v| v["type"] == "event" && v["kind"] == "migrate.mode")
            .collect();
        assert_eq!(modes.len(), 1, "{}{}", self.stdout, self.stderr);
        modes[0].clone()
    }

    fn result(&self) -> Value {
        assert_eq!(self.code, Some(0), "{}{}", self.stdout, self.stderr);
        self.lines()
            .into_iter()
            .find(|v| v["type"] == "result")
            .unwrap_or_else(|| panic!("no result in {}", self.stdout))
    }
}

fn imgferry(clouds_yaml: &str, args: &[&str]) -> Run {
    let mut cmd = common::imgferry();
    clean_env(&mut cmd, clouds_yaml);
    cmd.args(args).arg("--json");
    let out = common::run(&mut cmd);
    let run = Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    for password in dev_cloud().passwords() {
        assert!(!run.stdout.contains(password) && !run.stderr.contains(password));
    }
    run
}

/// Bytes of the files under `dir` (0 when it does not exist).
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Runs `imgferry ARGS` while a thread records the largest size `work_dir` reached.
fn with_peak(work_dir: &Path, run: impl FnOnce() -> Run) -> (Run, u64) {
    let peak = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (peak, done, dir) = (Arc::clone(&peak), Arc::clone(&done), work_dir.to_owned());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(dir_bytes(&dir), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let result = run();
    done.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    (result, peak.load(Ordering::Relaxed))
}

fn native_listing(image: &Path) -> sysprep_support::Listing {
    let mut guest = NativeGuest::open_file(image).unwrap();
    let mut roots = guest.inspect().unwrap();
    assert_eq!(roots.len(), 1, "{}", image.display());
    guest.mount_os(&roots.remove(0)).unwrap();
    listing(&mut guest)
}

/// The Debian fixture in c1's Glance.
fn debian_in_c1(dir: &Path, cleanup: &mut ImageGuard) -> String {
    let name = cleanup.name("c1-source", "stream");
    let file = fixture("debian").standalone_copy(dir, "source");
    create_image(
        "c1-source",
        &name,
        &[
            "--disk-format",
            "qcow2",
            "--container-format",
            "bare",
            "--file",
            path_str(&file),
        ],
    )
}

/// The files in `dir` (names only).
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn streamed_equals_staged_and_the_work_dir_holds_the_state_only() {
    let dir = common::tempdir();
    let mut cleanup = ImageGuard::new();
    let id = debian_in_c1(dir.path(), &mut cleanup);
    let clouds = dev_cloud().clouds_yaml();
    for (command, extra) in [
        ("migrate", &["--hostname", "streamed-01.example.net"][..]),
        ("template", &[][..]),
    ] {
        let out_dir = dir.path().join(command);
        std::fs::create_dir(&out_dir).unwrap();
        let streamed = out_dir.join("streamed.qcow2");
        let work = dir.path().join(format!("{command}-work"));
        let mut args = vec![command, &id, "--from", "c1-source", "--to-file"];
        args.push(path_str(&streamed));
        args.extend(extra);
        let mut streaming_args = args.clone();
        streaming_args.extend(["--work-dir", path_str(&work), "--keep-work-dir"]);
        let (run, peak) = with_peak(&work, || imgferry(clouds, &streaming_args));
        let result = run.result();
        let mode = run.mode();
        assert_eq!(mode["mode"], "streaming", "{}", run.stdout);
        assert_eq!(result["mode"]["mode"], "streaming");
        assert_eq!(result["convert"]["action"], "stream");
        assert!(result["sysprep"]["changes"].as_u64().unwrap() > 0);
        eprintln!("{command}: work dir peak {peak} bytes while streaming");
        assert!(peak < 64 << 10, "work dir reached {peak} bytes");
        assert_eq!(names_in(&work), ["state.json"], "the state only");
        assert_eq!(names_in(&out_dir), ["streamed.qcow2"], "no temp file left");
        let source = &result["download"];
        let record_hash = result["source"]["hash"].as_str().unwrap();
        assert_eq!(
            record_hash,
            format!("sha512:{}", source["sha512"].as_str().unwrap()),
            "the one GET verified the source"
        );
        assert_eq!(
            result["output"]["bytes"].as_u64().unwrap(),
            std::fs::metadata(&streamed).unwrap().len()
        );
        common::assert_qemu_check_clean(&streamed);

        let staged = out_dir.join("staged.qcow2");
        let staged_work = dir.path().join(format!("{command}-staged-work"));
        let mut staged_args = args.clone();
        staged_args[5] = path_str(&staged);
        staged_args.extend(["--staged", "--work-dir", path_str(&staged_work)]);
        let run = imgferry(clouds, &staged_args);
        run.result();
        let mode = run.mode();
        assert_eq!(mode["mode"], "staged");
        assert_eq!(mode["reason"], "--staged was given");
        common::assert_qemu_check_clean(&staged);
        assert_eq!(
            common::qemu_img_info(&streamed)["virtual-size"],
            common::qemu_img_info(&staged)["virtual-size"]
        );
        assert_eq!(
            native_listing(&streamed),
            native_listing(&staged),
            "{command}"
        );
    }
}

/// A clouds.yaml whose `proxied` cloud reaches c1's Glance through `proxy`.
fn proxied_clouds(dir: &Path, proxy: &FaultProxy) -> PathBuf {
    let dev = dev_cloud();
    let clouds = dir.join("clouds.yaml");
    std::fs::write(
        &clouds,
        format!(
            "clouds:\n  proxied:\n    auth:\n      auth_url: {}\n      username: source-user\n      password: {}\n      project_name: source\n      user_domain_name: Default\n      project_domain_name: Default\n    image_endpoint_override: {}\n",
            dev.var("IMGFERRY_DEV_C1_KEYSTONE_URL"),
            dev.var("IMGFERRY_DEV_PASSWORD"),
            proxy.url()
        ),
    )
    .unwrap();
    clouds
}

fn glance_host_port() -> String {
    dev_cloud()
        .var("IMGFERRY_DEV_C1_GLANCE_URL")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

#[test]
fn no_range_falls_back_to_staged_and_a_flipped_byte_leaves_no_file() {
    let dir = common::tempdir();
    let mut cleanup = ImageGuard::new();
    let id = debian_in_c1(dir.path(), &mut cleanup);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let target = out.join("result.qcow2");
    let args = |work: &str| {
        vec![
            "migrate".to_owned(),
            id.clone(),
            "--from".into(),
            "proxied".into(),
            "--to-file".into(),
            path_str(&target).into(),
            "--work-dir".into(),
            path_str(&dir.path().join(work)).into(),
        ]
    };

    let proxy = FaultProxy::start(&glance_host_port());
    let clouds = proxied_clouds(dir.path(), &proxy);
    proxy.add(Rule {
        method: "GET",
        path_suffix: "/file".into(),
        fault: Fault::StripRange,
        times: 100,
    });
    let strs = |v: &[String]| v.to_vec();
    let no_range = strs(&args("no-range"));
    let no_range: Vec<&str> = no_range.iter().map(String::as_str).collect();
    let dry = [&no_range[..], &["--dry-run"]].concat();
    let planned = imgferry(path_str(&clouds), &dry).result();
    assert_eq!(planned["mode"]["mode"], "staged");
    let run = imgferry(path_str(&clouds), &no_range);
    run.result();
    let mode = run.mode();
    assert_eq!(mode["mode"], "staged");
    let reason = mode["reason"].as_str().unwrap();
    assert!(reason.contains("does not serve byte ranges"), "{reason}");
    assert_eq!(reason, planned["mode"]["reason"].as_str().unwrap());
    common::assert_qemu_check_clean(&target);
    std::fs::remove_file(&target).unwrap();

    let proxy = FaultProxy::start(&glance_host_port());
    let clouds = proxied_clouds(dir.path(), &proxy);
    let flipped = strs(&args("flipped"));
    let flipped: Vec<&str> = flipped.iter().map(String::as_str).collect();
    let dry = [&flipped[..], &["--dry-run"]].concat();
    assert_eq!(
        imgferry(path_str(&clouds), &dry).result()["mode"]["mode"],
        "streaming"
    );
    proxy.add(Rule {
        method: "GET",
        path_suffix: "/file".into(),
        fault: Fault::FlipByteUnranged { offset: 700_000 },
        times: 1,
    });
    let run = imgferry(path_str(&clouds), &flipped);
    assert_eq!(run.code, Some(3), "{}{}", run.stdout, run.stderr);
    assert_eq!(run.mode()["mode"], "streaming");
    assert!(run.stdout.contains("as streamed"), "{}", run.stdout);
    assert!(names_in(&out).is_empty(), "{:?}", names_in(&out));
    assert!(!dir.path().join("flipped").exists(), "nothing to resume");
    let whole: Vec<_> = proxy
        .seen()
        .into_iter()
        .filter(|s| s.path.ends_with("/file") && s.range.is_none())
        .collect();
    assert_eq!(whole.len(), 1, "one GET of the data");
}
