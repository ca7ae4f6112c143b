//! `imgferry migrate` of volume-backed instance snapshots on the dev cloud's real
//! Cinder: the snapshot is built as Nova builds one (`scripts/dev-cloud.d/bfv_snapshot.py`:
//! the Debian fixture as the boot volume, a data volume of random bytes, a forced
//! snapshot of each, a size-0 Glance record with Nova's `block_device_mapping`), then
//! migrated c1/source → c1/target as volumes (killed three times on the way, then
//! finished once) and c1 → c2 as images. Each result is read
//! back through Cinder and Glance with the real `openstack` client: the root disk is the
//! sysprepped guest, the data disk is byte-identical, and the source project holds
//! exactly what it held before. Refusals (a snapshot in `error`, one of another project,
//! a quota too small) create nothing.

mod common;
mod sysprep_support;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::dev_cloud::{clean_env, dev_cloud, openstack, unique_name};
use common::image_guard::create_image;
use common::{imgferry, path_str, run};
use serde_json::Value;
use sysprep_support::{fixture, guestfs_env, listing_of};

/// Random bytes at the start of the data disk; the rest of its GiB is zeros.
const DATA_BYTES: usize = 3 << 20;
const GIB: u64 = 1 << 30;

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// `bfv_snapshot.py ARGS` with the dev cloud's Python; stdout.
fn bfv(args: &[&str]) -> String {
    let dev = dev_cloud();
    let python = Path::new(dev.var("IMGFERRY_DEV_CLOUD_DIR")).join("venv/bin/python");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/dev-cloud.d/bfv_snapshot.py");
    let mut cmd = Command::new(python);
    cmd.env("IMGFERRY_DEV_CLOUD_DIR", dev.var("IMGFERRY_DEV_CLOUD_DIR"));
    cmd.arg(script).args(args);
    common::run_ok(&mut cmd)
}

/// A volume-backed snapshot in `cloud`/`project` and everything under it; deleted on drop.
struct BfvSnapshot {
    cloud: String,
    project: String,
    record: Value,
    images: Vec<(String, String)>,
}

impl BfvSnapshot {
    fn id(&self) -> &str {
        self.record["image_id"].as_str().unwrap()
    }

    fn snapshots(&self) -> Vec<String> {
        self.record["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                s.as_str()
                    .map_or_else(|| s["id"].as_str().unwrap().to_owned(), str::to_owned)
            })
            .collect()
    }
}

impl Drop for BfvSnapshot {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(|| {
            bfv(&[
                "delete",
                "--cloud",
                &self.cloud,
                "--project",
                &self.project,
                self.id(),
            ])
        });
        for (cloud, id) in &self.images {
            let _ = std::panic::catch_unwind(|| openstack(cloud, &["image", "delete", id]));
        }
    }
}

/// The Debian fixture as the boot volume and `DATA_BYTES` random bytes as the data
/// volume, snapshotted as Nova does, in `cloud` (`c1`) project `project` (`source`).
fn build_snapshot(dir: &Path, cloud: &str, project: &str, name: &str) -> (BfvSnapshot, PathBuf) {
    let os_cloud = format!("{cloud}-{project}");
    let debian = fixture("debian");
    let root_image = create_image(
        &os_cloud,
        &format!("{name}-root-src"),
        &[
            "--disk-format",
            "qcow2",
            "--container-format",
            "bare",
            "--file",
            path_str(&debian.image),
            "--property",
            "hw_firmware_type=bios",
            "--property",
            "hw_machine_type=q35",
            "--property",
            "os_distro=debian",
        ],
    );
    let data = dir.join("data.raw");
    std::fs::write(&data, common::random_bytes(DATA_BYTES, 42)).unwrap();
    let data_image = create_image(
        &os_cloud,
        &format!("{name}-data-src"),
        &[
            "--disk-format",
            "raw",
            "--container-format",
            "bare",
            "--file",
            path_str(&data),
        ],
    );
    let record = json(&bfv(&[
        "create",
        "--cloud",
        cloud,
        "--project",
        project,
        "--image",
        &root_image,
        "--name",
        name,
        "--data-image",
        &data_image,
        "--root-size",
        "1",
        "--property",
        "hw_qemu_guest_agent=yes",
    ]));
    let snapshot = BfvSnapshot {
        cloud: cloud.into(),
        project: project.into(),
        record,
        images: vec![(os_cloud.clone(), root_image), (os_cloud, data_image)],
    };
    (snapshot, data)
}

/// `imgferry --json ARGS` against the dev cloud: (success, JSON lines, stderr).
fn imgferry_json(args: &[&str]) -> (bool, Vec<Value>, String) {
    let mut cmd = imgferry();
    clean_env(&mut cmd, dev_cloud().clouds_yaml());
    cmd.envs(guestfs_env().iter().map(|(k, v)| (k, v)));
    cmd.arg("--json").args(args);
    let out = run(&mut cmd);
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    (
        out.status.success(),
        lines,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn result(lines: &[Value]) -> &Value {
    lines
        .iter()
        .find(|l| l["type"] == "result")
        .unwrap_or_else(|| panic!("no result in {lines:?}"))
}

/// `KIND NAME` of the project's volumes, snapshots and images whose name contains
/// `needle` (tests run in parallel in the same projects: each looks at its own names).
fn named(cloud: &str, needle: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (kind, args) in [
        ("volume", &["volume", "list", "-f", "json"][..]),
        (
            "snapshot",
            &["volume", "snapshot", "list", "-f", "json"][..],
        ),
        ("image", &["image", "list", "-f", "json"][..]),
    ] {
        for row in json(&openstack(cloud, args)).as_array().unwrap() {
            let name = row["Name"].as_str().unwrap_or_default();
            if name.contains(needle) {
                names.push(format!("{kind} {name}"));
            }
        }
    }
    names.sort();
    names
}

/// The source project holds what it held before the run (`before`: [`named`] with the
/// test's unique name) and no temporary of the run's request.
fn assert_source_as_before(cloud: &str, name: &str, before: &[String], summary: &Value) {
    assert_eq!(named(cloud, name), before, "the source project's objects");
    let request = summary["request"].as_str().unwrap();
    let temporaries = named(cloud, &format!("imgferry-tmp-{}", &request[..12]));
    assert!(temporaries.is_empty(), "temporaries left: {temporaries:?}");
}

/// Reads a volume snapshot's bytes back as the operator would: a volume from it, an
/// image of that volume, `openstack image save`. Everything made is deleted.
fn read_back_snapshot(cloud: &str, snapshot: &str, dir: &Path) -> PathBuf {
    let name = unique_name("readback");
    let volume = json(&openstack(
        cloud,
        &[
            "volume",
            "create",
            "--snapshot",
            snapshot,
            "-f",
            "json",
            &name,
        ],
    ))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_for(
        cloud,
        &["volume", "show", &volume, "-f", "json"],
        "available",
    );
    let image = json(&openstack(
        cloud,
        &[
            "image",
            "create",
            "--volume",
            &volume,
            "--disk-format",
            "raw",
            "-f",
            "json",
            &name,
        ],
    ))["image_id"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_for(cloud, &["image", "show", &image, "-f", "json"], "active");
    let file = dir.join(format!("{snapshot}.raw"));
    openstack(cloud, &["image", "save", "--file", path_str(&file), &image]);
    openstack(cloud, &["image", "delete", &image]);
    wait_for(
        cloud,
        &["volume", "show", &volume, "-f", "json"],
        "available",
    );
    openstack(cloud, &["volume", "delete", &volume]);
    file
}

fn wait_for(cloud: &str, show: &[&str], status: &str) {
    for _ in 0..600 {
        let now = json(&openstack(cloud, show))["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if now == status {
            return;
        }
        assert!(
            !now.starts_with("error") && now != "killed",
            "{show:?}: {now}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    panic!("{show:?} never became {status}");
}

/// `file` holds `data` then zeros up to one GiB.
fn assert_data_disk(file: &Path, data: &Path) {
    let expected = std::fs::read(data).unwrap();
    let mut reader = std::fs::File::open(file).unwrap();
    assert_eq!(reader.metadata().unwrap().len(), GIB, "{}", file.display());
    let mut head = vec![0u8; expected.len()];
    reader.read_exact(&mut head).unwrap();
    assert!(head == expected, "the data disk's first bytes differ");
    let mut chunk = vec![0u8; 4 << 20];
    loop {
        let n = reader.read(&mut chunk).unwrap();
        if n == 0 {
            break;
        }
        assert!(
            chunk[..n].iter().all(|&b| b == 0),
            "the data disk's tail is not zeros"
        );
    }
}

/// Whether volume or image `id` still exists (a volume being deleted does not count).
fn still_there(cloud: &str, object: &str, id: &str) -> bool {
    let dev = dev_cloud();
    let mut cmd = Command::new(dev.var("IMGFERRY_OPENSTACK"));
    clean_env(&mut cmd, dev.clouds_yaml());
    cmd.args(["--os-cloud", cloud, object, "show", id, "-f", "json"]);
    let out = run(&mut cmd);
    out.status.success()
        && !matches!(
            json(&String::from_utf8_lossy(&out.stdout))["status"].as_str(),
            Some("deleting" | "deleted" | "pending_delete")
        )
}

fn image_show(cloud: &str, id: &str) -> Value {
    json(&openstack(cloud, &["image", "show", id, "-f", "json"]))
}

#[test]
fn volume_backed_snapshot_to_volumes_survives_sigkill_and_boots_the_same_shape() {
    let dir = common::tempdir();
    let name = unique_name("bfv-volumes");
    let (snapshot, data) = build_snapshot(dir.path(), "c1", "source", &name);
    let before = named("c1-source", &name);
    let moved = format!("{name}-moved");
    let work = dir.path().join("work");
    let args = [
        "migrate",
        snapshot.id(),
        "--from",
        "c1-source",
        "--to",
        "c1-target",
        "--name",
        &moved,
        "--hostname",
        "web-03",
        "--target-as",
        "volumes",
        "--disk-format",
        "qcow2",
        "--work-dir",
        path_str(&work),
    ];
    // SIGKILL while the temporary volume is being created, then while Cinder uploads
    // it, then while the target volume is being created: each re-run goes on.
    for kind in [
        "volume.temporary",
        "volume.uploading",
        "volume.target_volume",
    ] {
        kill_at_event(&args, kind);
    }
    let (ok, lines, stderr) = imgferry_json(&args);
    let summary = result(&lines).clone();
    let record_id = summary["record"]["id"].as_str().map(str::to_owned);
    let _target = TargetCleanup {
        cloud: "c1-target",
        summary: summary.clone(),
    };
    assert!(ok, "{stderr}\n{lines:#?}");
    let record_id = record_id.unwrap();

    // The record is Nova's shape, on new snapshots of the target project.
    let record = image_show("c1-target", &record_id);
    assert_eq!(record["status"], "active");
    assert_eq!(record["size"], 0);
    let properties = &record["properties"];
    assert_eq!(properties["bdm_v2"], "True");
    assert_eq!(properties["root_device_name"], "/dev/vda");
    assert_eq!(properties["hw_machine_type"], "q35", "{properties}");
    assert_eq!(properties["hw_qemu_guest_agent"], "yes", "{properties}");
    let mapping = json(properties["block_device_mapping"].as_str().unwrap());
    let entries = mapping.as_array().unwrap();
    assert_eq!(entries.len(), 2);
    let source_snapshots = snapshot.snapshots();
    let mut by_device = BTreeMap::new();
    for entry in entries {
        assert_eq!(entry["source_type"], "snapshot");
        assert_eq!(entry["destination_type"], "volume");
        assert_eq!(entry["volume_size"], 1);
        let id = entry["snapshot_id"].as_str().unwrap().to_owned();
        assert!(
            !source_snapshots.contains(&id),
            "a new snapshot, not the source's"
        );
        let shown = json(&openstack(
            "c1-target",
            &["volume", "snapshot", "show", &id, "-f", "json"],
        ));
        assert_eq!(shown["status"], "available");
        by_device.insert(
            entry["device_name"].as_str().unwrap().to_owned(),
            (id, entry["boot_index"].clone()),
        );
    }
    assert_eq!(by_device["/dev/vda"].1, 0);
    assert!(by_device["/dev/vdb"].1.is_null());
    let records = json(&openstack(
        "c1-target",
        &["image", "list", "--name", &moved, "-f", "json"],
    ));
    assert_eq!(
        records.as_array().unwrap().len(),
        1,
        "one record: {records}"
    );
    for list in [
        &["volume", "list", "-f", "json"][..],
        &["volume", "snapshot", "list", "-f", "json"][..],
    ] {
        let ours = json(&openstack("c1-target", list))
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["Name"].as_str().is_some_and(|n| n.starts_with(&moved)))
            .count();
        assert_eq!(ours, 2, "one per disk at the target: {list:?}");
    }

    // Read back through Cinder and Glance: the sysprepped guest, and the same data.
    let root = read_back_snapshot("c1-target", &by_device["/dev/vda"].0, dir.path());
    let (os, listing) = listing_of(&root);
    assert_eq!(os.hostname, "web-03");
    assert!(!listing.contains_key("/etc/krb5.keytab"));
    assert!(!listing.contains_key("/etc/udev/rules.d/70-persistent-net.rules"));
    std::fs::remove_file(&root).unwrap();
    let data_back = read_back_snapshot("c1-target", &by_device["/dev/vdb"].0, dir.path());
    assert_data_disk(&data_back, &data);

    // The intermediate images are gone; the source project is as it was.
    for disk in summary["disks"].as_array().unwrap() {
        assert_eq!(disk["image_deleted"], true);
        let id = disk["image"]["id"].as_str().unwrap();
        assert!(
            json(&openstack("c1-target", &["image", "list", "-f", "json"]))
                .as_array()
                .unwrap()
                .iter()
                .all(|i| i["ID"] != id)
        );
    }
    assert_source_as_before("c1-source", &name, &before, &summary);
    assert!(!work.join("volumes.json").exists());

    // Again: nothing new is made.
    let (ok, lines, stderr) = imgferry_json(&args);
    assert!(ok, "{stderr}");
    let again = result(&lines);
    assert_eq!(again["record"]["id"], record_id.as_str(), "{again}");
}

/// Deletes what a run made at the target: the record, snapshots, volumes, images.
struct TargetCleanup {
    cloud: &'static str,
    summary: Value,
}

impl Drop for TargetCleanup {
    fn drop(&mut self) {
        let cloud = self.cloud;
        let quiet = |args: &[&str]| {
            let _ = std::panic::catch_unwind(|| openstack(cloud, args));
        };
        if let Some(id) = self.summary["record"]["id"].as_str() {
            quiet(&["image", "delete", id]);
        }
        for disk in self.summary["disks"].as_array().into_iter().flatten() {
            if let Some(id) = disk["snapshot"].as_str() {
                quiet(&["volume", "snapshot", "delete", id]);
            }
            if let Some(id) = disk["image"]["id"].as_str() {
                quiet(&["image", "delete", id]);
            }
        }
        std::thread::sleep(std::time::Duration::from_secs(3));
        for disk in self.summary["disks"].as_array().into_iter().flatten() {
            if let Some(id) = disk["volume"].as_str() {
                quiet(&["volume", "delete", id]);
            }
        }
    }
}

#[test]
fn volume_backed_snapshot_to_images_in_another_cloud() {
    let dir = common::tempdir();
    let name = unique_name("bfv-images");
    let (snapshot, data) = build_snapshot(dir.path(), "c1", "source", &name);
    let before = named("c1-source", &name);
    let moved = format!("{name}-moved");
    let (ok, lines, stderr) = imgferry_json(&[
        "template",
        snapshot.id(),
        "--from",
        "c1-source",
        "--to",
        "c2-target",
        "--name",
        &moved,
        "--hostname",
        "tmpl-01",
        "--disk-format",
        "qcow2",
        "--work-dir",
        path_str(&dir.path().join("work")),
    ]);
    let summary = result(&lines).clone();
    let _target = TargetCleanup {
        cloud: "c2-target",
        summary: summary.clone(),
    };
    assert!(ok, "{stderr}\n{lines:#?}");
    assert!(summary["record"].is_null());
    let disks = summary["disks"].as_array().unwrap();
    assert_eq!(disks.len(), 2);
    let root_id = disks[0]["image"]["id"].as_str().unwrap();
    let data_id = disks[1]["image"]["id"].as_str().unwrap();
    let root = image_show("c2-target", root_id);
    assert_eq!(root["name"], moved.as_str());
    assert_eq!(root["properties"]["imgferry_disk_vdb"], data_id);
    assert_eq!(root["properties"]["hw_machine_type"], "q35");
    assert_eq!(root["min_disk"], 1);
    let data_image = image_show("c2-target", data_id);
    assert_eq!(data_image["name"], format!("{moved}-vdb"));
    assert_eq!(data_image["properties"]["imgferry_root_image"], root_id);

    let saved = dir.path().join("root.qcow2");
    openstack(
        "c2-target",
        &["image", "save", "--file", path_str(&saved), root_id],
    );
    let (os, listing) = listing_of(&saved);
    assert_eq!(os.hostname, "tmpl-01");
    assert!(!listing.contains_key("/etc/krb5.keytab"));
    assert!(
        !listing.contains_key("/etc/ssh/ssh_host_rsa_key"),
        "template removes host keys"
    );
    let saved_data = dir.path().join("data.qcow2");
    openstack(
        "c2-target",
        &["image", "save", "--file", path_str(&saved_data), data_id],
    );
    let raw = dir.path().join("data-back.raw");
    common::qemu_img(&[
        "convert",
        "-O",
        "raw",
        path_str(&saved_data),
        path_str(&raw),
    ]);
    assert_data_disk(&raw, &data);
    assert_source_as_before("c1-source", &name, &before, &summary);
}

/// `imgferry --json ARGS`, sent `signal` as soon as it emits an event of kind `kind`;
/// returns the JSON lines it printed and its exit status. Panics with the run's output
/// when it ended before that event.
fn signal_at_event(
    args: &[&str],
    kind: &str,
    signal: libc::c_int,
) -> (Vec<Value>, std::process::ExitStatus) {
    use std::io::BufRead;
    let mut cmd = imgferry();
    clean_env(&mut cmd, dev_cloud().clouds_yaml());
    cmd.envs(guestfs_env().iter().map(|(k, v)| (k, v)));
    cmd.arg("--json").args(args);
    let stderr_file = tempfile::NamedTempFile::new().unwrap();
    cmd.stdout(std::process::Stdio::piped())
        .stderr(stderr_file.reopen().unwrap());
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = Vec::new();
    let mut sent = false;
    for line in std::io::BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let value: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        if !sent && value["kind"] == kind {
            // SAFETY: kill(2) on our own child's pid, which it still is (not yet waited).
            let pid = i32::try_from(child.id()).unwrap();
            assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
            sent = true;
        }
        lines.push(value);
    }
    let status = child.wait().unwrap();
    assert!(
        sent,
        "the run ended ({status}) before a {kind} event\nstdout: {lines:?}\nstderr: {}",
        std::fs::read_to_string(stderr_file.path()).unwrap_or_default()
    );
    (lines, status)
}

/// `imgferry --json ARGS`, SIGKILLed as soon as it emits an event of kind `kind`.
fn kill_at_event(args: &[&str], kind: &str) {
    signal_at_event(args, kind, libc::SIGKILL);
}

#[test]
fn bad_snapshots_and_a_small_quota_are_refused_before_anything_is_made() {
    let dir = common::tempdir();
    let name = unique_name("bfv-refused");
    // c2/source: no other test uses its volumes, so its quota can be shrunk here.
    let (snapshot, _) = build_snapshot(dir.path(), "c2", "source", &name);
    let before = named("c2-source", &name);
    let args = |target: &'static str| -> Vec<String> {
        [
            "migrate",
            snapshot.id(),
            "--from",
            "c2-source",
            "--to",
            target,
            "--no-sysprep",
            "--work-dir",
            path_str(&dir.path().join("work")),
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let refused = |args: &[String], words: &str| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, lines, stderr) = imgferry_json(&args);
        assert!(!ok, "{lines:?}");
        assert!(stderr.contains(words), "{words}: {stderr}");
    };

    // A quota with no room for the temporary volume.
    let quota = json(&openstack(
        "c2-admin",
        &["quota", "show", "source", "-f", "json"],
    ));
    let limit = quota
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["Resource"] == "volumes")
        .and_then(|row| row["Limit"].as_i64())
        .unwrap()
        .to_string();
    let in_use = json(&openstack("c2-source", &["volume", "list", "-f", "json"]))
        .as_array()
        .unwrap()
        .len();
    openstack(
        "c2-admin",
        &["quota", "set", "--volumes", &in_use.to_string(), "source"],
    );
    let outcome =
        std::panic::catch_unwind(|| refused(&args("c2-target"), "room for 0 more volumes"));
    openstack("c2-admin", &["quota", "set", "--volumes", &limit, "source"]);
    outcome.unwrap();

    // A snapshot in `error`.
    let root_snapshot = snapshot.snapshots()[0].clone();
    openstack(
        "c2-admin",
        &[
            "volume",
            "snapshot",
            "set",
            "--state",
            "error",
            &root_snapshot,
        ],
    );
    let outcome =
        std::panic::catch_unwind(|| refused(&args("c2-target"), "is error, not available"));
    openstack(
        "c2-admin",
        &[
            "volume",
            "snapshot",
            "set",
            "--state",
            "available",
            &root_snapshot,
        ],
    );
    outcome.unwrap();

    // A record whose snapshots belong to another project.
    let shown = image_show("c2-source", snapshot.id());
    let mapping = shown["properties"]["block_device_mapping"]
        .as_str()
        .unwrap()
        .to_owned();
    let foreign = format!("{name}-foreign");
    let foreign_id = json(&openstack(
        "c2-target",
        &[
            "image",
            "create",
            "--disk-format",
            "raw",
            "--container-format",
            "bare",
            "--property",
            &format!("block_device_mapping={mapping}"),
            "--property",
            "bdm_v2=True",
            "--property",
            "root_device_name=/dev/vda",
            "-f",
            "json",
            &foreign,
        ],
    ))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let foreign_args: Vec<String> = [
        "migrate",
        &foreign_id,
        "--from",
        "c2-target",
        "--to",
        "c2-target",
        "--no-sysprep",
        "--work-dir",
        path_str(&dir.path().join("work2")),
    ]
    .map(str::to_owned)
    .to_vec();
    let outcome = std::panic::catch_unwind(|| refused(&foreign_args, "is not visible to project"));
    openstack("c2-target", &["image", "delete", &foreign_id]);
    outcome.unwrap();

    assert_eq!(named("c2-source", &name), before, "nothing was created");

    // Ctrl-C while Cinder uploads the temporary volume: exit 130, both temporaries gone.
    let (lines, status) = signal_at_event(
        &args("c2-target")
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        "volume.uploading",
        libc::SIGINT,
    );
    assert_eq!(status.code(), Some(130), "{lines:?}");
    let made: Vec<(String, String)> = lines
        .iter()
        .filter(|l| l["kind"] == "volume.temporary" || l["kind"] == "volume.uploading")
        .map(|l| {
            (
                l["object"].as_str().unwrap().to_owned(),
                l["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(made.len(), 2, "{lines:?}");
    for (object, id) in &made {
        let gone = lines
            .iter()
            .any(|l| l["kind"] == "volume.temporary_deleted" && l["id"] == id.as_str());
        assert!(gone, "temporary {object} {id} not deleted: {lines:?}");
    }
    for (object, id) in &made {
        assert!(
            !still_there("c2-source", object, id),
            "{object} {id} is still there"
        );
    }
    assert!(
        !dir.path().join("work/volumes.json").exists(),
        "no state is left"
    );
}
