//! `imgferry migrate` killed with SIGKILL in the middle of a stage, then run again with the
//! same command, on the dev cloud (`scripts/dev-cloud`): during the download and during
//! the upload (slowed down by the fault proxy in tests/common/fault_proxy.rs, the kill
//! lands at a known point: the download's `.part` file has data / Glance says the target
//! is `saving`) and during sysprep (at the first change the appliance makes). After the
//! kill no target image is `active`; after the re-run exactly one is, no unfinished one
//! is left, and its bytes as `openstack image save` gives them hash to what imgferry
//! reported.
//!
//! Image names are unique per test; an [`ImageGuard`] deletes them even when an
//! assertion fails.

mod common;
mod sysprep_support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::dev_cloud::{clean_env, dev_cloud, openstack, unique_name};
use common::fault_proxy::{Fault, FaultProxy, Rule};
use common::image_guard::{create_image, ImageGuard};
use common::{imgferry, path_str};
use imgferry::cloud::config::{CloudCatalog, ConfigEnv};
use imgferry::cloud::glance::{Glance, ListFilter};
use imgferry::cloud::keystone::{Session, SessionOptions};
use imgferry::disk::open_image;
use imgferry::guest::native::NativeGuest;
use imgferry::guest::GuestFs;
use imgferry::report::SilentReporter;
use serde_json::Value;
use sha2::{Digest, Sha512};
use sysprep_support::{fixture, guestfs_env};

/// Slow enough that the rest of a fixture takes seconds, so the kill lands mid-way.
const SLOW: Fault = Fault::Throttle {
    after: 0,
    bytes_per_second: 256 * 1024,
};
/// The download writes the `.part` file in pieces of `transfer::BUFFER_SIZE`: the
/// first piece comes at full speed, the rest slowly.
const SLOW_AFTER_ONE_PIECE: Fault = Fault::Throttle {
    after: imgferry::transfer::BUFFER_SIZE as u64 + 64 * 1024,
    bytes_per_second: 256 * 1024,
};
/// How long a kill point may take to come.
const PATIENCE: Duration = Duration::from_secs(120);

/// A clouds.yaml with the dev cloud's clouds plus `px-source`/`px-target`: c1's source
/// and target projects with Glance reached through `proxy`.
fn proxied_clouds(dir: &Path, proxy: &FaultProxy) -> PathBuf {
    let dev = dev_cloud();
    let mut text = std::fs::read_to_string(dev.clouds_yaml()).unwrap();
    for (cloud, user, project) in [
        ("px-source", "source-user", "source"),
        ("px-target", "target-user", "target"),
    ] {
        text.push_str(&format!(
            "  {cloud}:\n    auth:\n      auth_url: {}\n      username: {user}\n      password: {}\n      project_name: {project}\n      user_domain_name: Default\n      project_domain_name: Default\n    image_endpoint_override: {}\n",
            dev.var("IMGFERRY_DEV_C1_KEYSTONE_URL"),
            dev.var("IMGFERRY_DEV_PASSWORD"),
            proxy.url()
        ));
    }
    let clouds = dir.join("clouds.yaml");
    std::fs::write(&clouds, text).unwrap();
    clouds
}

fn c1_glance() -> String {
    dev_cloud()
        .var("IMGFERRY_DEV_C1_GLANCE_URL")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

/// A Glance client of `cloud` (for fast polling; the checks use `openstack`).
fn glance(cloud: &str) -> Glance {
    let env = ConfigEnv::new(
        [(
            "OS_CLIENT_CONFIG_FILE".to_owned(),
            dev_cloud().clouds_yaml().to_owned(),
        )],
        None,
        None,
    );
    let config = CloudCatalog::load(&env)
        .unwrap()
        .select(Some(cloud))
        .unwrap();
    let session = Session::connect(&config, &SessionOptions::default(), &SilentReporter).unwrap();
    Glance::connect(session).unwrap()
}

/// (id, status) of every image called `name` in `cloud`.
fn statuses(glance: &mut Glance, name: &str) -> Vec<(String, String)> {
    let filter = ListFilter {
        name: Some(name.to_owned()),
        ..ListFilter::default()
    };
    glance
        .list(&filter)
        .unwrap()
        .into_iter()
        .map(|image| (image.id, image.status))
        .collect()
}

/// Uploads `file` to c1-source with the properties Nova sets on a snapshot; its id.
fn nova_snapshot(file: &Path, name: &str) -> String {
    let mut args = vec!["--disk-format", "qcow2"];
    args.extend(["--container-format", "bare", "--file", path_str(file)]);
    for prop in [
        "image_type=snapshot",
        "instance_uuid=9f1d2c3b-0000-4000-8000-000000000003",
        "hw_disk_bus=scsi",
    ] {
        args.extend(["--property", prop]);
    }
    create_image("c1-source", name, &args)
}

fn command(clouds: &Path, args: &[&str]) -> Command {
    let mut cmd = imgferry();
    clean_env(&mut cmd, path_str(clouds));
    cmd.envs(guestfs_env().iter().map(|(k, v)| (k, v)));
    cmd.arg("--json").args(args);
    cmd
}

/// Starts the command and SIGKILLs it once an event satisfies `at` and then `ready()`
/// holds (polled). Returns the events it printed.
fn kill_at(
    mut cmd: Command,
    at: impl Fn(&Value) -> bool,
    mut ready: impl FnMut() -> bool,
) -> Vec<Value> {
    let mut child: Child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut events = Vec::new();
    let started = Instant::now();
    loop {
        let Some(Ok(line)) = lines.next() else {
            let status = child.wait().unwrap();
            panic!("the run ended ({status}) before the kill point: {events:?}");
        };
        let event: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        let hit = at(&event);
        events.push(event);
        if hit {
            break;
        }
    }
    while !ready() {
        assert!(started.elapsed() < PATIENCE, "no kill point: {events:?}");
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the run ended ({status}) before the kill point: {events:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "killed, not finished: {events:?}"
    );
    events
}

/// Runs the command to its end: (success, events, stderr).
fn finish(mut cmd: Command) -> (bool, Vec<Value>, String) {
    let out = common::run(&mut cmd);
    let events = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    (
        out.status.success(),
        events,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn is_event(event: &Value, kind: &str) -> bool {
    event["type"] == "event" && event["kind"] == kind
}

fn stage_start(stage: &'static str) -> impl Fn(&Value) -> bool {
    move |e| is_event(e, "migrate.stage_start") && e["stage"] == stage
}

fn result(events: &[Value]) -> &Value {
    events
        .iter()
        .find(|e| e["type"] == "result")
        .unwrap_or_else(|| panic!("no result in {events:?}"))
}

/// The stages the summary says an earlier run finished.
fn resumed_stages(summary: &Value) -> Vec<&str> {
    summary["stages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["resumed"] == true)
        .map(|s| s["stage"].as_str().unwrap())
        .collect()
}

fn sha512_hex(path: &Path) -> String {
    Sha512::digest(std::fs::read(path).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The one image called `name` in c1-target after the re-run: active, the one imgferry
/// reported, and `openstack image save` gives the bytes whose sha512 imgferry reported.
/// Returns the saved file.
fn assert_one_correct_image(name: &str, summary: &Value, dir: &Path) -> PathBuf {
    let images = statuses(&mut glance("c1-target"), name);
    assert_eq!(images.len(), 1, "exactly one target image: {images:?}");
    let (id, status) = &images[0];
    assert_eq!(status, "active");
    assert_eq!(summary["target"]["id"], id.as_str());
    let saved = dir.join("saved.qcow2");
    openstack(
        "c1-target",
        &["image", "save", "--file", path_str(&saved), id],
    );
    let sha512 = sha512_hex(&saved);
    assert_eq!(Some(sha512.as_str()), summary["output"]["sha512"].as_str());
    let shown: Value = serde_json::from_str(&openstack(
        "c1-target",
        &["image", "show", id, "-f", "json"],
    ))
    .unwrap();
    assert_eq!(shown["properties"]["os_hash_value"], sha512.as_str());
    common::assert_qemu_check_clean(&saved);
    saved
}

/// No image called `name` in c1-target is `active` (a killed run finished none).
fn assert_none_active(name: &str) -> Vec<(String, String)> {
    let images = statuses(&mut glance("c1-target"), name);
    assert!(
        images.iter().all(|(_, status)| status != "active"),
        "a killed run left an active image: {images:?}"
    );
    images
}

struct Case {
    dir: tempfile::TempDir,
    guard: ImageGuard,
    name: String,
    moved: String,
    source_id: String,
    work: PathBuf,
}

/// A Nova-like snapshot of the fixture `guest` in c1-source.
fn case(label: &str, guest: &'static str) -> Case {
    let image = fixture(guest).image;
    let mut guard = ImageGuard::new();
    let name = unique_name(label);
    let moved = format!("{name}-moved");
    guard.watch("c1-source", &name);
    guard.watch("c1-target", &moved);
    let source_id = nova_snapshot(&image, &name);
    let dir = common::tempdir();
    let work = dir.path().join("work");
    Case {
        dir,
        guard,
        name,
        moved,
        source_id,
        work,
    }
}

impl Case {
    /// migrate NAME --from FROM --to TO --name NAME-moved --work-dir W EXTRA...
    fn args<'a>(&'a self, from: &'a str, to: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["migrate", &self.name, "--from", from, "--to", to];
        args.extend(["--name", &self.moved, "--work-dir", path_str(&self.work)]);
        args.extend(extra);
        args
    }
}

#[test]
fn killed_during_the_download_the_rerun_resumes_it_and_makes_one_image() {
    // centos7 (6.7 MB) is more than one download piece; the guest does not matter here.
    let case = case("kill-download", "centos7");
    let proxy = FaultProxy::start(&c1_glance());
    let clouds = proxied_clouds(case.dir.path(), &proxy);
    proxy.add(Rule {
        method: "GET",
        path_suffix: format!("{}/file", case.source_id),
        fault: SLOW_AFTER_ONE_PIECE,
        times: 1,
    });
    let args = case.args(
        "px-source",
        "px-target",
        &["--no-sysprep", "--compat", "0.10"],
    );
    let part = case.work.join("source.img.part");
    let events = kill_at(command(&clouds, &args), stage_start("download"), || {
        std::fs::metadata(&part).is_ok_and(|m| m.len() > 0)
    });
    assert!(!events.iter().any(|e| is_event(e, "upload.created")));
    assert!(part.exists() && case.work.join("state.json").exists());
    assert!(assert_none_active(&case.moved).is_empty());

    let (ok, events, stderr) = finish(command(&clouds, &args));
    assert!(ok, "{stderr}\n{events:?}");
    assert!(
        events.iter().any(|e| is_event(e, "download.resumed")),
        "the .part file was resumed: {events:?}"
    );
    let ranges: Vec<_> = proxy.seen().into_iter().filter_map(|s| s.range).collect();
    assert_eq!(ranges.len(), 1, "one ranged GET: {:?}", proxy.seen());
    let saved = assert_one_correct_image(&case.moved, result(&events), case.dir.path());
    common::assert_same_content(&fixture("centos7").image, &saved);
    assert_eq!(
        common::qemu_img_info(&saved)["format-specific"]["data"]["compat"],
        "0.10"
    );
    assert!(!case.work.exists(), "the work dir is removed on success");
    drop(case.guard);
}

#[test]
fn killed_during_the_upload_the_rerun_deletes_the_unfinished_image_and_makes_one() {
    let case = case("kill-upload", "debian");
    let proxy = FaultProxy::start(&c1_glance());
    let clouds = proxied_clouds(case.dir.path(), &proxy);
    proxy.add(Rule {
        method: "PUT",
        path_suffix: "/file".to_owned(),
        fault: SLOW,
        times: 1,
    });
    let args = case.args(
        "px-source",
        "px-target",
        &["--no-sysprep", "--compat", "0.10"],
    );
    let mut target = glance("c1-target");
    let events = kill_at(
        command(&clouds, &args),
        |e| is_event(e, "upload.created"),
        || {
            statuses(&mut target, &case.moved)
                .iter()
                .any(|(_, status)| status == "saving")
        },
    );
    let created = events
        .iter()
        .find(|e| is_event(e, "upload.created"))
        .unwrap()["image_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let left = assert_none_active(&case.moved);
    assert_eq!(
        left.iter().map(|(id, _)| id).collect::<Vec<_>>(),
        [&created],
        "the killed upload left its unfinished image"
    );

    let (ok, events, stderr) = finish(command(&clouds, &args));
    assert!(ok, "{stderr}\n{events:?}");
    assert!(
        events.iter().any(|e| e["type"] == "warning"
            && e["message"]
                .as_str()
                .unwrap()
                .contains(&format!("deleting unfinished target image {created}"))),
        "{events:?}"
    );
    let summary = result(&events);
    assert_ne!(summary["target"]["id"], created.as_str());
    assert_eq!(
        resumed_stages(summary),
        ["source", "space", "download", "sysprep", "convert"]
    );
    let saved = assert_one_correct_image(&case.moved, summary, case.dir.path());
    common::assert_same_content(&fixture("debian").image, &saved);
    assert!(!case.work.exists(), "the work dir is removed on success");
    drop(case.guard);
}

#[test]
fn killed_during_sysprep_the_rerun_redoes_it_and_makes_one_image() {
    let case = case("kill-sysprep", "debian");
    let clouds = PathBuf::from(dev_cloud().clouds_yaml());
    // The appliance's sysprep takes seconds (the native one milliseconds): time to kill it.
    let args = case.args(
        "c1-source",
        "c1-target",
        &["--hostname", "killed-03", "--backend", "libguestfs"],
    );
    let events = kill_at(
        command(&clouds, &args),
        |e| is_event(e, "sysprep.change"),
        || true,
    );
    assert!(events.iter().any(stage_start("sysprep")));
    assert!(assert_none_active(&case.moved).is_empty());
    wait_for_appliance_exit(&case.work);

    let (ok, events, stderr) = finish(command(&clouds, &args));
    assert!(ok, "{stderr}\n{events:?}");
    let summary = result(&events);
    assert_eq!(resumed_stages(summary), ["source", "space", "download"]);
    assert!(summary["sysprep"]["changes"].as_u64().unwrap() > 0);
    let saved = assert_one_correct_image(&case.moved, summary, case.dir.path());
    // Read with the native ext4 reader (its inspection equals libguestfs's on this
    // fixture, tests/native_guest.rs): no fourth appliance launch.
    let disk = std::sync::Arc::new(open_image(&saved).unwrap());
    let mut guest = NativeGuest::open(disk, &saved).unwrap();
    let roots = guest.inspect().unwrap();
    assert_eq!(roots.len(), 1);
    assert_eq!(
        roots[0].hostname, "killed-03",
        "the sysprep of the re-run is in the image"
    );
    assert!(
        !case.work.exists(),
        "the work dir, with the killed appliance's overlay, is removed on success"
    );
    drop(case.guard);
}

/// The killed run's appliance (a qemu child holding the work image) exits on its own
/// once its parent is gone; wait for it, so the re-run gets the image alone.
fn wait_for_appliance_exit(work: &Path) {
    let needle = path_str(work).to_owned();
    let started = Instant::now();
    loop {
        let holders: Vec<String> = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|entry| std::fs::read(entry.path().join("cmdline")).ok())
            .map(|cmdline| String::from_utf8_lossy(&cmdline).replace('\0', " "))
            .filter(|cmdline| cmdline.contains(&needle))
            .collect();
        if holders.is_empty() {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "processes still hold the work dir a minute after the kill: {holders:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
