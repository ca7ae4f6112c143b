//! `imgferry download`, `upload` and `share` against the real Keystone + Glance of
//! `scripts/dev-cloud`, with the real `openstack` client and `qemu-img` as oracles, and a
//! fault-injecting proxy (tests/common/fault_proxy.rs) in front of the real Glance for
//! flipped bytes, dropped connections and 503 bursts.
//!
//! Every imgferry run made here is checked for the dev cloud's passwords in its stdout
//! and stderr (`run_imgferry`), so no test of this file can leak one unnoticed.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::dev_cloud::{clean_env, dev_cloud, openstack};
use common::fault_proxy::{Fault, FaultProxy, Rule};
use common::image_guard::{ids_named, ImageGuard};
use serde_json::Value;

/// What one imgferry run printed.
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

    fn result(&self) -> Value {
        assert_eq!(self.code, Some(0), "{}{}", self.stdout, self.stderr);
        self.lines()
            .into_iter()
            .find(|v| v["type"] == "result")
            .unwrap_or_else(|| panic!("no result line in {}", self.stdout))
    }

    fn events(&self, kind: &str) -> Vec<Value> {
        self.lines()
            .into_iter()
            .filter(|v| v["type"] == "event" && v["kind"] == kind)
            .collect()
    }

    fn error(&self) -> String {
        let error = self
            .lines()
            .into_iter()
            .find(|v| v["type"] == "error")
            .map(|v| v["message"].as_str().unwrap_or_default().to_owned());
        error.unwrap_or_else(|| self.stderr.clone())
    }
}

/// Runs `imgferry ARGS` with `clouds_yaml`, asserting no password reaches its output.
fn run_imgferry(clouds_yaml: &str, args: &[&str]) -> Run {
    let mut cmd = common::imgferry();
    clean_env(&mut cmd, clouds_yaml);
    cmd.args(args);
    let out = common::run(&mut cmd);
    let run = Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    for password in dev_cloud().passwords() {
        assert!(
            !run.stdout.contains(password) && !run.stderr.contains(password),
            "a password leaked in imgferry {args:?}:\n{}{}",
            run.stdout,
            run.stderr
        );
    }
    run
}

/// `imgferry ARGS --os-cloud CLOUD --json` with the dev cloud's clouds.yaml.
fn imgferry(cloud: &str, args: &[&str]) -> Run {
    let dev = dev_cloud();
    let mut all = args.to_vec();
    all.extend(["--os-cloud", cloud, "--json"]);
    if matches!(args.first(), Some(&"download" | &"upload")) {
        all.extend(["--retry-delay", "0.05"]);
    }
    run_imgferry(dev.clouds_yaml(), &all)
}

/// A raw image of `mib` MiB: pseudo-random data with holes in between.
fn raw_image(dir: &Path, mib: usize, seed: u64) -> PathBuf {
    let path = dir.join(format!("disk-{seed}.raw"));
    let file = std::fs::File::create(&path).unwrap();
    file.set_len((mib as u64) << 20).unwrap();
    use std::os::unix::fs::FileExt;
    for (index, at) in [0usize, mib / 2, mib - 1].into_iter().enumerate() {
        let data = common::random_bytes(512 << 10, seed + index as u64);
        file.write_all_at(&data, (at as u64) << 20).unwrap();
    }
    path
}

/// A qcow2 image (qemu-img) of 16 MiB with a few written ranges.
fn qcow2_image(dir: &Path) -> PathBuf {
    let path = dir.join("disk.qcow2");
    common::qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        common::path_str(&path),
        "16M",
    ]);
    common::qemu_io(
        "qcow2",
        &path,
        &[
            "write -P 0x5a 0 1M",
            "write -P 0xa5 7M 512k",
            "write -z 12M 1M",
        ],
    );
    path
}

fn upload(cloud: &str, file: &Path, name: &str, extra: &[&str]) -> Run {
    let mut args = vec!["upload", common::path_str(file), "--name", name];
    args.extend(extra);
    imgferry(cloud, &args)
}

fn md5_hex(path: &Path) -> String {
    let out = common::run_ok(Command::new("md5sum").arg(path));
    out.split_whitespace().next().unwrap().to_owned()
}

fn assert_no_file(path: &Path) {
    assert!(!path.exists(), "{} exists", path.display());
    let part = PathBuf::from(format!("{}.part", path.display()));
    assert!(!part.exists(), "{} exists", part.display());
}

#[test]
fn raw_and_qcow2_round_trips_keep_every_byte() {
    let dir = common::tempdir();
    let mut cleanup = ImageGuard::new();
    for (file, format) in [
        (raw_image(dir.path(), 6, 11), "raw"),
        (qcow2_image(dir.path()), "qcow2"),
    ] {
        let name = cleanup.name("c1-source", format);
        let uploaded = upload("c1-source", &file, &name, &[]).result();
        let image = &uploaded["image"];
        assert_eq!(image["disk_format"], format, "detected from the content");
        assert_eq!(image["status"], "active");
        assert_eq!(image["checksum"].as_str().unwrap(), md5_hex(&file));
        assert_eq!(
            uploaded["verified"],
            serde_json::json!(["size", "os_hash_value"])
        );
        assert_eq!(uploaded["digests"]["sha512"], image["os_hash_value"]);
        let id = image["id"].as_str().unwrap();

        let back = dir.path().join(format!("back.{format}"));
        let downloaded = imgferry(
            "c1-source",
            &["download", id, "-o", common::path_str(&back)],
        );
        let result = downloaded.result();
        // sha512 (os_hash_value) is the check; md5 is not computed beside it.
        assert_eq!(result["verified"], serde_json::json!(["os_hash_value"]));
        assert_eq!(result["digests"]["sha512"], image["os_hash_value"]);
        assert_eq!(result["digests"].get("md5"), None, "{result}");
        assert_eq!(std::fs::read(&back).unwrap(), std::fs::read(&file).unwrap());
        common::assert_same_content(&file, &back);
        assert_eq!(common::qemu_img_info(&back)["format"], format);
        assert!(!PathBuf::from(format!("{}.part", back.display())).exists());
        // The download of the raw file keeps its holes.
        if format == "raw" {
            use std::os::unix::fs::MetadataExt;
            let allocated = std::fs::metadata(&back).unwrap().blocks() * 512;
            assert!(allocated <= 2 << 20, "{allocated} bytes allocated");
        }
    }
}

#[test]
fn interoperates_with_the_openstack_client_both_ways() {
    let dir = common::tempdir();
    let mut cleanup = ImageGuard::new();
    let file = raw_image(dir.path(), 4, 21);

    // openstack image create --file -> imgferry download.
    let theirs = cleanup.name("c1-source", "by-openstack");
    let created: Value = serde_json::from_str(&openstack(
        "c1-source",
        &[
            "image",
            "create",
            "-f",
            "json",
            "--disk-format",
            "raw",
            "--container-format",
            "bare",
            "--file",
            common::path_str(&file),
            &theirs,
        ],
    ))
    .unwrap();
    let out = dir.path().join("from-openstack.raw");
    let run = imgferry(
        "c1-source",
        &["download", &theirs, "-o", common::path_str(&out)],
    );
    assert_eq!(run.result()["image"]["id"], created["id"]);
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&file).unwrap());

    // imgferry upload -> openstack image save.
    let qcow2 = qcow2_image(dir.path());
    let ours = cleanup.name("c1-source", "by-imgferry");
    let uploaded = upload(
        "c1-source",
        &qcow2,
        &ours,
        &["--property", "os_distro=debian"],
    )
    .result();
    let id = uploaded["image"]["id"].as_str().unwrap();
    let saved = dir.path().join("saved.qcow2");
    openstack(
        "c1-source",
        &["image", "save", "--file", common::path_str(&saved), id],
    );
    assert_eq!(
        std::fs::read(&saved).unwrap(),
        std::fs::read(&qcow2).unwrap()
    );
    let shown: Value = serde_json::from_str(&openstack(
        "c1-source",
        &["image", "show", "-f", "json", id],
    ))
    .unwrap();
    assert_eq!(shown["disk_format"], "qcow2");
    assert_eq!(shown["properties"]["os_distro"], "debian");
    assert_eq!(shown["checksum"].as_str().unwrap(), md5_hex(&qcow2));
}

#[test]
fn copies_between_clouds_and_private_images_stay_private() {
    let dir = common::tempdir();
    let mut cleanup = ImageGuard::new();
    let file = raw_image(dir.path(), 3, 31);
    let name = cleanup.name("c1-source", "private");
    let id = upload("c1-source", &file, &name, &["--visibility", "private"]).result()["image"]
        ["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Invisible to the other project of the same cloud, by id and by name.
    for wanted in [id.as_str(), name.as_str()] {
        let out = dir.path().join("nope.raw");
        let run = imgferry(
            "c1-target",
            &["download", wanted, "-o", common::path_str(&out)],
        );
        assert_eq!(run.code, Some(1));
        assert!(
            run.error()
                .contains(&format!("no image `{wanted}` is visible to project target")),
            "{}",
            run.error()
        );
        assert_no_file(&out);
    }

    // c1 -> c2: download, upload, same bytes and same digests on both sides.
    let local = dir.path().join("copy.raw");
    imgferry(
        "c1-source",
        &["download", &id, "-o", common::path_str(&local)],
    )
    .result();
    cleanup.watch("c2-target", &name);
    let copied = upload("c2-target", &local, &name, &[]).result();
    let original: Value = serde_json::from_str(&openstack(
        "c1-source",
        &["image", "show", "-f", "json", &id],
    ))
    .unwrap();
    assert_eq!(copied["image"]["checksum"], original["checksum"]);
    assert_eq!(
        copied["image"]["os_hash_value"],
        original["properties"]["os_hash_value"]
    );
    let again = dir.path().join("again.raw");
    imgferry(
        "c2-target",
        &[
            "download",
            copied["image"]["id"].as_str().unwrap(),
            "-o",
            common::path_str(&again),
        ],
    )
    .result();
    assert_eq!(
        std::fs::read(&again).unwrap(),
        std::fs::read(&file).unwrap()
    );
}

#[test]
fn share_then_accept_lets_the_other_project_download() {
    let dir = common::tempdir();
    let mut cleanup = ImageGuard::new();
    let file = raw_image(dir.path(), 2, 41);
    let name = cleanup.name("c1-source", "shared");
    let id = upload("c1-source", &file, &name, &["--visibility", "private"]).result()["image"]
        ["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let target_project = imgferry("c1-target", &["images", "list"]).result()["project"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let out = dir.path().join("shared.raw");
    let before = imgferry(
        "c1-target",
        &["download", &id, "-o", common::path_str(&out)],
    );
    assert_eq!(before.code, Some(1), "{}", before.stdout);

    let shared = imgferry("c1-source", &["share", &id, "--project", &target_project]);
    let result = shared.result();
    assert_eq!(result["status"], "pending");
    assert_eq!(result["member_id"], target_project.as_str());
    assert_eq!(
        shared.events("share.visibility").len(),
        1,
        "private -> shared"
    );

    let accepted = imgferry("c1-target", &["share", &id, "--accept"]).result();
    assert_eq!(accepted["status"], "accepted");
    imgferry(
        "c1-target",
        &["download", &id, "-o", common::path_str(&out)],
    )
    .result();
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&file).unwrap());
    // The accepted image is now listed for the member, as the openstack CLI sees it.
    let listed = openstack("c1-target", &["image", "list", "-f", "value", "-c", "ID"]);
    assert!(listed.contains(&id), "{listed}");

    // Sharing again (Glance answers 409 to a second add) reports the member as it is.
    let again = imgferry("c1-source", &["share", &id, "--project", &target_project]);
    let result = again.result();
    assert_eq!(result["status"], "accepted", "{}", again.stdout);
    assert_eq!(result["member_id"], target_project.as_str());
    let existing = again.events("share.existing");
    assert_eq!(existing.len(), 1, "{}", again.stdout);
    assert_eq!(existing[0]["status"], "accepted");
    assert!(
        again.events("share.visibility").is_empty(),
        "already shared"
    );
}

#[test]
fn wrong_password_unknown_image_and_ambiguous_name_are_clear_errors() {
    let dev = dev_cloud();
    let dir = common::tempdir();
    let out = dir.path().join("x.raw");
    let out_str = common::path_str(&out);

    let wrong = "wrong-Pw-9xT3-transfer-must-not-leak";
    let clouds = dir.path().join("clouds.yaml");
    std::fs::write(
        &clouds,
        format!(
            "clouds:\n  bad:\n    auth:\n      auth_url: {}\n      username: source-user\n      password: {wrong}\n      project_name: source\n      user_domain_name: Default\n      project_domain_name: Default\n",
            dev.var("IMGFERRY_DEV_C1_KEYSTONE_URL")
        ),
    )
    .unwrap();
    let file = raw_image(dir.path(), 1, 51);
    for args in [
        vec![
            "download",
            "anything",
            "-o",
            out_str,
            "--os-cloud",
            "bad",
            "-vv",
        ],
        vec![
            "upload",
            common::path_str(&file),
            "--name",
            "n",
            "--os-cloud",
            "bad",
            "--json",
        ],
    ] {
        let run = run_imgferry(common::path_str(&clouds), &args);
        assert_eq!(run.code, Some(1));
        assert!(run.stderr.contains("HTTP 401"), "{}", run.stderr);
        assert!(
            !run.stdout.contains(wrong) && !run.stderr.contains(wrong),
            "{}{}",
            run.stdout,
            run.stderr
        );
    }

    let run = imgferry(
        "c1-source",
        &["download", "no-such-image-anywhere", "-o", out_str],
    );
    assert_eq!(run.code, Some(1));
    assert!(
        run.error()
            .contains("no image `no-such-image-anywhere` is visible to project source"),
        "{}",
        run.error()
    );

    let mut cleanup = ImageGuard::new();
    let name = cleanup.name("c1-source", "twin");
    let first = upload("c1-source", &file, &name, &[]).result()["image"]["id"].clone();
    let second = upload("c1-source", &file, &name, &[]).result()["image"]["id"].clone();
    let run = imgferry("c1-source", &["download", &name, "-o", out_str]);
    assert_eq!(run.code, Some(1));
    let error = run.error();
    assert!(
        error.contains(&format!("2 images are named `{name}`")),
        "{error}"
    );
    assert!(error.contains(first.as_str().unwrap()) && error.contains(second.as_str().unwrap()));
    assert_no_file(&out);
}

#[test]
fn a_format_mismatch_is_refused_before_anything_is_created() {
    let dir = common::tempdir();
    let mut cleanup = ImageGuard::new();
    let qcow2 = qcow2_image(dir.path());
    let name = cleanup.name("c1-source", "mismatch");
    let run = upload("c1-source", &qcow2, &name, &["--disk-format", "raw"]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.error()
            .contains("holds a qcow2 image, not the raw declared"),
        "{}",
        run.error()
    );
    assert!(run.events("upload.created").is_empty());
    assert!(ids_named("c1-source", &name).is_empty());

    let raw = raw_image(dir.path(), 1, 61);
    let run = upload("c1-source", &raw, &name, &["--disk-format", "qcow2"]);
    assert_eq!(run.code, Some(1));
    assert!(ids_named("c1-source", &name).is_empty());
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

fn via_proxy(clouds: &Path, args: &[&str]) -> Run {
    let mut all = args.to_vec();
    all.extend(["--os-cloud", "proxied", "--json", "--retry-delay", "0.05"]);
    run_imgferry(common::path_str(clouds), &all)
}

#[test]
fn download_faults_flipped_byte_dropped_connection_and_503_burst() {
    let dir = common::tempdir();
    let mut cleanup = ImageGuard::new();
    let file = raw_image(dir.path(), 8, 71);
    let name = cleanup.name("c1-source", "faults");
    let id = upload("c1-source", &file, &name, &[]).result()["image"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let proxy = FaultProxy::start(&glance_host_port());
    let clouds = proxied_clouds(dir.path(), &proxy);
    let out = dir.path().join("out.raw");
    let out_str = common::path_str(&out);

    // A flipped byte: refused, exit 3, no FILE and no FILE.part, the digest named.
    proxy.add(Rule {
        method: "GET",
        path_suffix: format!("{id}/file"),
        fault: Fault::FlipByte { offset: 5 << 20 },
        times: 1,
    });
    let run = via_proxy(&clouds, &["download", &id, "-o", out_str]);
    assert_eq!(run.code, Some(3), "{}{}", run.stdout, run.stderr);
    let error = run.error();
    assert!(error.contains("failed verification: sha512 is"), "{error}");
    assert!(error.contains("Glance recorded"), "{error}");
    assert_no_file(&out);

    // The connection closed after 3 MiB: resumed with Range from there, verified.
    proxy.add(Rule {
        method: "GET",
        path_suffix: format!("{id}/file"),
        fault: Fault::CloseResponseAfter { bytes: 3 << 20 },
        times: 1,
    });
    let run = via_proxy(&clouds, &["download", &id, "-o", out_str]);
    let result = run.result();
    assert_eq!(result["resumes"], 1, "{}", run.stdout);
    assert_eq!(result["restarts"], 0);
    let resumed = run.events("download.resumed");
    assert_eq!(resumed.len(), 1);
    let offset = resumed[0]["offset"].as_u64().unwrap();
    assert!(offset > 0 && offset <= 3 << 20, "{offset}");
    assert!(
        proxy
            .seen()
            .iter()
            .any(|s| s.range.as_deref() == Some(&format!("bytes={offset}-"))),
        "{:?}",
        proxy.seen()
    );
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&file).unwrap());
    std::fs::remove_file(&out).unwrap();

    // Three 503s in a row: retried, then the download succeeds.
    proxy.add(Rule {
        method: "GET",
        path_suffix: format!("{id}/file"),
        fault: Fault::Unavailable,
        times: 3,
    });
    let run = via_proxy(&clouds, &["download", &id, "-o", out_str]);
    run.result();
    let retries = run.events("download.retry");
    assert_eq!(retries.len(), 3, "{}", run.stdout);
    assert!(retries[0]["reason"].as_str().unwrap().contains("HTTP 503"));
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&file).unwrap());

    // More 503s than retries: a clear failure, nothing left.
    std::fs::remove_file(&out).unwrap();
    proxy.add(Rule {
        method: "GET",
        path_suffix: format!("{id}/file"),
        fault: Fault::Unavailable,
        times: 3,
    });
    let run = via_proxy(&clouds, &["download", &id, "-o", out_str, "--retries", "2"]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.error().contains("failed after 3 attempts"),
        "{}",
        run.error()
    );
    assert!(!out.exists());
}

/// The wait for `queued` is proven when the proxy's hold was ended by imgferry's look at
/// the record: that look found it `status` and said so once. When a loaded Glance could
/// not answer the look while the cut upload still held one of its threads, the hold ends
/// at its limit and the record is `queued` by the time it is seen: the test then rests
/// on what the user is promised (checked by the caller: one active image, right bytes).
fn assert_waited_if_looked(proxy: &FaultProxy, run: &Run, status: &str) {
    let waited = run.events("upload.waiting");
    if proxy.holds().last() == Some(&true) {
        assert_eq!(waited.len(), 1, "{}", run.stdout);
        assert_eq!(waited[0]["status"], status);
    } else {
        eprintln!(
            "Glance did not answer the look during the hold: the wait is not proven by this run"
        );
        assert!(waited.len() <= 1, "{}", run.stdout);
    }
}

#[test]
fn upload_faults_leave_no_image_behind_and_503_is_retried() {
    let dir = common::tempdir();
    let mut cleanup = ImageGuard::new();
    let file = raw_image(dir.path(), 6, 81);
    let proxy = FaultProxy::start(&glance_host_port());
    let clouds = proxied_clouds(dir.path(), &proxy);
    let file_str = common::path_str(&file);

    // Socket closed mid-upload, no retries: the half-created image is deleted.
    let name = cleanup.name("c1-source", "cut");
    proxy.add(Rule {
        method: "PUT",
        path_suffix: "/file".into(),
        fault: Fault::CloseRequestAfter { bytes: 2 << 20 },
        times: 1,
    });
    let run = via_proxy(
        &clouds,
        &["upload", file_str, "--name", &name, "--retries", "0"],
    );
    assert_eq!(run.code, Some(1), "{}{}", run.stdout, run.stderr);
    assert_eq!(run.events("upload.created").len(), 1);
    assert_eq!(run.events("upload.cleaned_up").len(), 1, "{}", run.stdout);
    assert!(ids_named("c1-source", &name).is_empty());

    // The same cut with retries: sent again, verified.
    let name = cleanup.name("c1-source", "cut-retried");
    proxy.add(Rule {
        method: "PUT",
        path_suffix: "/file".into(),
        fault: Fault::CloseRequestAfter { bytes: 1 << 20 },
        times: 1,
    });
    let run = via_proxy(&clouds, &["upload", file_str, "--name", &name]);
    let result = run.result();
    assert_eq!(result["attempts"], 2);
    assert_eq!(
        result["image"]["checksum"].as_str().unwrap(),
        md5_hex(&file)
    );

    // The client is cut but Glance's side stays open until imgferry has looked at the
    // record, so the record says `saving` when the retry comes, however loaded the
    // machine: imgferry waits for `queued` instead of sending into a 409.
    let name = cleanup.name("c1-source", "cut-while-saving");
    proxy.add(Rule {
        method: "PUT",
        path_suffix: "/file".into(),
        fault: Fault::CutClientThenHold { bytes: 1 << 20 },
        times: 1,
    });
    let run = via_proxy(&clouds, &["upload", file_str, "--name", &name]);
    let result = run.result();
    assert_eq!(result["attempts"], 2, "{}", run.stderr);
    assert_waited_if_looked(&proxy, &run, "saving");
    assert_eq!(
        result["image"]["checksum"].as_str().unwrap(),
        md5_hex(&file)
    );

    // The same while staging for glance-direct: the record says `uploading` meanwhile.
    let name = cleanup.name("c1-source", "cut-while-staging");
    proxy.add(Rule {
        method: "PUT",
        path_suffix: "/stage".into(),
        fault: Fault::CutClientThenHold { bytes: 1 << 20 },
        times: 1,
    });
    let run = via_proxy(
        &clouds,
        &[
            "upload",
            file_str,
            "--name",
            &name,
            "--method",
            "glance-direct",
        ],
    );
    let result = run.result();
    assert_eq!(result["attempts"], 2, "{}", run.stderr);
    assert_eq!(result["image"]["status"], "active");
    assert_waited_if_looked(&proxy, &run, "uploading");

    // A 503 burst on the PUT: retried.
    let name = cleanup.name("c1-source", "busy");
    proxy.add(Rule {
        method: "PUT",
        path_suffix: "/file".into(),
        fault: Fault::Unavailable,
        times: 2,
    });
    let run = via_proxy(&clouds, &["upload", file_str, "--name", &name]);
    assert_eq!(run.result()["attempts"], 3);
    assert_eq!(run.events("upload.retry").len(), 2);
}

#[test]
fn glance_direct_import_stages_and_imports() {
    let dir = common::tempdir();
    let mut cleanup = ImageGuard::new();
    let file = qcow2_image(dir.path());
    let name = cleanup.name("c1-source", "import");
    let result = upload("c1-source", &file, &name, &["--method", "glance-direct"]).result();
    assert_eq!(result["method"], "glance-direct");
    assert_eq!(result["image"]["status"], "active");
    assert_eq!(
        result["image"]["checksum"].as_str().unwrap(),
        md5_hex(&file)
    );
}

#[test]
fn resume_continues_from_a_part_file_and_a_foreign_part_is_refused() {
    let dir = common::tempdir();
    let mut cleanup = ImageGuard::new();
    let file = raw_image(dir.path(), 4, 91);
    let name = cleanup.name("c1-source", "resume");
    let id = upload("c1-source", &file, &name, &[]).result()["image"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let proxy = FaultProxy::start(&glance_host_port());
    let clouds = proxied_clouds(dir.path(), &proxy);
    let out = dir.path().join("out.raw");
    let part = dir.path().join("out.raw.part");
    let data = std::fs::read(&file).unwrap();

    // What an interrupted run leaves: the first 1.5 MiB in FILE.part.
    let kept = 3 << 19;
    std::fs::write(&part, &data[..kept]).unwrap();
    let run = via_proxy(
        &clouds,
        &["download", &id, "-o", common::path_str(&out), "--resume"],
    );
    assert_eq!(run.result()["reused_bytes"], kept as u64);
    assert!(proxy
        .seen()
        .iter()
        .any(|s| s.range.as_deref() == Some(&format!("bytes={kept}-"))));
    assert_eq!(std::fs::read(&out).unwrap(), data);
    assert!(!part.exists());

    // A part file of other bytes: the whole-file verification refuses it, nothing kept.
    std::fs::remove_file(&out).unwrap();
    std::fs::write(&part, vec![0x55u8; kept]).unwrap();
    let run = via_proxy(
        &clouds,
        &["download", &id, "-o", common::path_str(&out), "--resume"],
    );
    assert_eq!(run.code, Some(3), "{}", run.stdout);
    assert_no_file(&out);
}

/// Runs `imgferry ARGS --os-cloud proxied --json` through `proxy` and sends it SIGINT once
/// the proxy has seen `method` on a path ending in `path_suffix` and a moment has passed
/// (the transfer is then under way, slowed down by a throttle rule). Returns what it
/// printed; asserts no password reached the output.
fn interrupt_via_proxy(
    clouds: &Path,
    proxy: &FaultProxy,
    (method, path_suffix): (&str, &str),
    args: &[&str],
) -> (Run, std::time::Duration) {
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let mut cmd = common::imgferry();
    clean_env(&mut cmd, common::path_str(clouds));
    cmd.args(args)
        .args(["--os-cloud", "proxied", "--json", "--retry-delay", "0.05"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn imgferry");
    let started = Instant::now();
    // The signal comes once the transfer is in its slow part: past the throttle's
    // first MiB, however long the cloud took to start it.
    let midway = |s: &common::fault_proxy::Seen| {
        s.method == method
            && s.path.ends_with(path_suffix)
            && s.body_bytes() > (1 << 20) + (64 << 10)
    };
    while !proxy.seen().iter().any(midway) {
        if let Some(status) = child.try_wait().expect("poll imgferry") {
            let out = child.wait_with_output().expect("collect output");
            panic!(
                "imgferry ended ({status}) before the signal: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the proxy never forwarded a MiB of {method} ...{path_suffix}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid = i32::try_from(child.id()).expect("pid");
    // SAFETY: signalling our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0, "kill -INT");
    let signalled = Instant::now();
    let out = child.wait_with_output().expect("wait for imgferry");
    let stopping = signalled.elapsed();
    let run = Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    for password in dev_cloud().passwords() {
        assert!(!run.stdout.contains(password) && !run.stderr.contains(password));
    }
    (run, stopping)
}

#[test]
fn ctrl_c_keeps_a_download_part_for_resume_and_deletes_a_half_sent_upload() {
    let dir = common::tempdir();
    let mut cleanup = ImageGuard::new();
    let file = raw_image(dir.path(), 8, 101);
    let data = std::fs::read(&file).unwrap();
    let name = cleanup.name("c1-source", "sigint-source");
    let id = upload("c1-source", &file, &name, &[]).result()["image"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let proxy = FaultProxy::start(&glance_host_port());
    let clouds = proxied_clouds(dir.path(), &proxy);
    // After the first MiB, 512 KiB/s: 14 s for the rest, the signal comes long before.
    let slow = Fault::Throttle {
        after: 1 << 20,
        bytes_per_second: 512 << 10,
    };

    // Download: exit 130, no FILE, FILE.part holds a true prefix of the image.
    let out = dir.path().join("out.raw");
    let part = dir.path().join("out.raw.part");
    let file_path = format!("{id}/file");
    proxy.add(Rule {
        method: "GET",
        path_suffix: file_path.clone(),
        fault: slow,
        times: 1,
    });
    let (run, stopping) = interrupt_via_proxy(
        &clouds,
        &proxy,
        ("GET", &file_path),
        &["download", &id, "-o", common::path_str(&out)],
    );
    assert_eq!(run.code, Some(130), "{}{}", run.stdout, run.stderr);
    // The rest would take 14 s at the throttled rate.
    assert!(
        stopping.as_secs_f64() < 5.0,
        "the download took {stopping:?} to stop"
    );
    assert!(run.error().contains("interrupted"), "{}", run.error());
    assert!(!out.exists());
    let kept = std::fs::read(&part).expect("FILE.part is kept");
    assert!(
        !kept.is_empty() && kept.len() < data.len(),
        "{} bytes kept",
        kept.len()
    );
    assert!(kept[..] == data[..kept.len()], "FILE.part is not a prefix");
    assert!(
        run.error().contains(&format!("after {} bytes", kept.len())),
        "{}",
        run.error()
    );
    // --resume continues from it (the throttle rule is used up).
    let resumed = via_proxy(
        &clouds,
        &["download", &id, "-o", common::path_str(&out), "--resume"],
    );
    assert_eq!(resumed.result()["reused_bytes"], kept.len() as u64);
    assert_eq!(std::fs::read(&out).unwrap(), data);
    assert!(!part.exists());

    // Upload: exit 130, the half-created image deleted, no image of that name.
    let name = cleanup.name("c1-source", "sigint-upload");
    proxy.add(Rule {
        method: "PUT",
        path_suffix: "/file".into(),
        fault: slow,
        times: 1,
    });
    let (run, _) = interrupt_via_proxy(
        &clouds,
        &proxy,
        ("PUT", "/file"),
        &["upload", common::path_str(&file), "--name", &name],
    );
    assert_eq!(run.code, Some(130), "{}{}", run.stdout, run.stderr);
    assert_eq!(run.events("upload.created").len(), 1, "{}", run.stdout);
    let cleaned = run.events("upload.cleaned_up");
    assert_eq!(cleaned.len(), 1, "{}{}", run.stdout, run.stderr);
    assert!(ids_named("c1-source", &name).is_empty());
}

/// The requests `proxy` saw since `from` with this method and path ending.
fn seen_since(
    proxy: &FaultProxy,
    from: usize,
    method: &str,
    suffix: &str,
) -> Vec<common::fault_proxy::Seen> {
    proxy.seen()[from..]
        .iter()
        .filter(|s| s.method == method && s.path.split('?').next().unwrap().ends_with(suffix))
        .cloned()
        .collect()
}

/// Asserts `requests` are one refused for its (replaced) token and one replay carrying a
/// new token.
fn assert_one_replay_with_a_new_token(requests: &[common::fault_proxy::Seen], what: &str) {
    assert_eq!(requests.len(), 2, "{what}: {requests:?}");
    assert_eq!(requests[0].fault, Some(Fault::InvalidToken), "{what}");
    assert_eq!(requests[1].fault, None, "{what}");
    assert!(requests[0].token_fingerprint.is_some(), "{what}");
    assert_ne!(
        requests[0].token_fingerprint, requests[1].token_fingerprint,
        "{what}: the replay carried the same token"
    );
}

#[test]
fn a_401_gets_one_new_token_and_one_replay() {
    let dir = common::tempdir();
    let mut cleanup = ImageGuard::new();
    // Small enough that the whole upload body is buffered before Glance answers.
    let file = raw_image(dir.path(), 1, 111);
    let data = std::fs::read(&file).unwrap();
    let name = cleanup.name("c1-source", "token-source");
    let id = upload("c1-source", &file, &name, &[]).result()["image"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let proxy = FaultProxy::start(&glance_host_port());
    let clouds = proxied_clouds(dir.path(), &proxy);
    let out = dir.path().join("out.raw");
    let record = format!("/v2/images/{id}");
    let data_path = format!("{id}/file");

    // The real Glance refuses the record lookup and the data request once each (the
    // token the proxy substitutes is not Keystone's): both are replayed with a new token.
    for suffix in [&record, &data_path] {
        proxy.add(Rule {
            method: "GET",
            path_suffix: suffix.clone(),
            fault: Fault::InvalidToken,
            times: 1,
        });
    }
    let from = proxy.seen().len();
    let run = via_proxy(&clouds, &["download", &id, "-o", common::path_str(&out)]);
    run.result();
    assert_eq!(std::fs::read(&out).unwrap(), data);
    assert_one_replay_with_a_new_token(&seen_since(&proxy, from, "GET", &record), "show");
    assert_one_replay_with_a_new_token(&seen_since(&proxy, from, "GET", &data_path), "data");
    std::fs::remove_file(&out).unwrap();

    // Refused twice: replayed once only, then a clear error naming the 401; nothing left.
    proxy.add(Rule {
        method: "GET",
        path_suffix: data_path.clone(),
        fault: Fault::InvalidToken,
        times: 2,
    });
    let from = proxy.seen().len();
    let run = via_proxy(&clouds, &["download", &id, "-o", common::path_str(&out)]);
    assert_eq!(run.code, Some(1), "{}{}", run.stdout, run.stderr);
    assert!(run.error().contains("401"), "{}", run.error());
    assert_eq!(seen_since(&proxy, from, "GET", &data_path).len(), 2);
    assert_no_file(&out);

    // An upload's PUT refused once: a new token, the data sent again, verified.
    let name = cleanup.name("c1-source", "token-upload");
    proxy.add(Rule {
        method: "PUT",
        path_suffix: "/file".into(),
        fault: Fault::InvalidToken,
        times: 1,
    });
    let from = proxy.seen().len();
    let run = via_proxy(
        &clouds,
        &["upload", common::path_str(&file), "--name", &name],
    );
    let result = run.result();
    assert!(
        result["verified"]
            .as_array()
            .unwrap()
            .contains(&"os_hash_value".into()),
        "{result}"
    );
    assert_one_replay_with_a_new_token(&seen_since(&proxy, from, "PUT", "/file"), "upload");
}
