//! `imgferry migrate` on the dev cloud (`scripts/dev-cloud`), cross-checked with the real
//! `openstack` client: c1/source → c2/target with a new hostname (the image saved back
//! with `openstack image save` is inspected by libguestfs and hashed), and c1/source →
//! c1/target resumed after stops at stage boundaries and after a killed upload left an
//! unfinished image, or an active one without imgferry's verification mark: exactly one
//! target image every time.
//!
//! Image names are unique per test; an [`ImageGuard`] deletes everything a test created,
//! also when an assertion fails half-way.

mod common;
mod sysprep_support;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use common::image_guard::{create_image, ImageGuard};
use common::{imgferry, path_str, run, run_ok};
use imgferry::cloud::config::{CloudCatalog, ConfigEnv};
use imgferry::cloud::glance::Glance;
use imgferry::cloud::keystone::{Session, SessionOptions};
use imgferry::guest::native::NativeGuest;
use imgferry::guest::GuestFs;
use imgferry::report::SilentReporter;
use serde_json::Value;
use sha2::{Digest, Sha512};
use sysprep_support::{fixture, guestfs_env, listing, listing_of, Listing};

fn dev_env() -> &'static HashMap<String, String> {
    static ENV: OnceLock<HashMap<String, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/dev-cloud");
        let up = run(Command::new(&script).arg("up"));
        assert!(
            up.status.success(),
            "scripts/dev-cloud up: {}",
            String::from_utf8_lossy(&up.stderr)
        );
        run_ok(Command::new(&script).arg("env"))
            .lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
            .collect()
    })
}

fn with_cloud_env(cmd: &mut Command) -> &mut Command {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("OS_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("OS_CLIENT_CONFIG_FILE", &dev_env()["OS_CLIENT_CONFIG_FILE"])
}

/// The real `openstack --os-cloud CLOUD ARGS -f json` (must succeed).
fn openstack(cloud: &str, args: &[&str]) -> String {
    let mut cmd = Command::new(&dev_env()["IMGFERRY_OPENSTACK"]);
    with_cloud_env(&mut cmd)
        .args(["--os-cloud", cloud])
        .args(args);
    run_ok(&mut cmd)
}

fn glance(cloud: &str) -> Glance {
    let env = ConfigEnv::new(
        [(
            "OS_CLIENT_CONFIG_FILE".to_owned(),
            dev_env()["OS_CLIENT_CONFIG_FILE"].clone(),
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

fn unique(label: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("imgferry-migrate-{label}-{}-{nanos}", std::process::id())
}

/// Uploads `file` to c1-source as Nova would store an instance snapshot.
fn nova_snapshot(file: &Path, name: &str) -> String {
    let mut args = vec!["--disk-format", "qcow2", "--container-format", "bare"];
    args.extend(["--file", path_str(file)]);
    let props = [
        "image_type=snapshot",
        "instance_uuid=9f1d2c3b-0000-4000-8000-000000000001",
        "base_image_ref=5b7c0000-0000-4000-8000-000000000002",
        "owner_project_name=prod",
        "owner_user_name=alice",
        "boot_roles=member,reader",
        "user_id=0d1e",
        "hw_disk_bus=scsi",
        "hw_qemu_guest_agent=yes",
        "os_distro=debian",
        "os_type=linux",
        "department=physics",
    ];
    for prop in &props {
        args.extend(["--property", prop]);
    }
    create_image("c1-source", name, &args)
}

fn images_named(cloud: &str, name: &str) -> Vec<Value> {
    let list: Value = serde_json::from_str(&openstack(
        cloud,
        &["image", "list", "--name", name, "-f", "json"],
    ))
    .unwrap();
    list.as_array().unwrap().clone()
}

fn migrate(args: &[&str]) -> (bool, Vec<Value>, String) {
    let mut cmd = imgferry();
    with_cloud_env(&mut cmd);
    if !args.contains(&"--no-sysprep") {
        cmd.envs(guestfs_env().iter().map(|(k, v)| (k, v)));
    }
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

/// The properties `openstack image show` reports, minus those Glance adds itself.
/// The listing of `image`'s single OS, read by the native backend.
fn native_listing(image: &Path) -> Listing {
    let mut guest = NativeGuest::open_file(image).expect("open");
    let os = guest.inspect().expect("inspect").remove(0);
    guest.mount_os(&os).expect("mount");
    listing(&mut guest)
}

fn user_properties(cloud: &str, id: &str) -> BTreeSet<String> {
    let shown: Value =
        serde_json::from_str(&openstack(cloud, &["image", "show", id, "-f", "json"])).unwrap();
    shown["properties"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| !["os_hash_algo", "os_hash_value", "os_hidden", "stores"].contains(&k.as_str()))
        .cloned()
        .collect()
}

#[test]
fn c1_to_c2_with_a_new_hostname_gives_one_clean_image_with_the_expected_properties() {
    let debian = fixture("debian");
    let dir = common::tempdir();
    let name = unique("c2");
    let moved = format!("{name}-moved");
    let mut guard = ImageGuard::new();
    guard.watch("c1-source", &name);
    guard.watch("c2-target", &moved);
    let source_id = nova_snapshot(&debian.image, &name);
    let work = dir.path().join("work");
    let args = [
        "migrate",
        &name,
        "--from",
        "c1-source",
        "--to",
        "c2-target",
        "--name",
        &moved,
        "--hostname",
        "web-02",
        "--property",
        "os=LINUX",
        "--work-dir",
        path_str(&work),
    ];
    let (ok, lines, stderr) = migrate(&args);
    assert!(ok, "{stderr}\n{lines:?}");
    let summary = result(&lines);
    let id = summary["target"]["id"].as_str().unwrap().to_owned();
    assert_eq!(summary["target"]["location"], "c2-target");
    let expected: BTreeSet<String> = [
        "department",
        "hw_disk_bus",
        "hw_qemu_guest_agent",
        "os",
        "os_distro",
        "os_type",
        "imgferry_request",
        "imgferry_source_cloud",
        "imgferry_source_hash",
        "imgferry_source_image_id",
        "imgferry_sysprep",
        "imgferry_verified",
        "imgferry_version",
    ]
    .map(String::from)
    .into();
    assert_eq!(user_properties("c2-target", &id), expected);
    let shown: Value = serde_json::from_str(&openstack(
        "c2-target",
        &["image", "show", &id, "-f", "json"],
    ))
    .unwrap();
    assert_eq!(shown["status"], "active");
    assert_eq!(shown["properties"]["imgferry_source_image_id"], source_id);
    assert_eq!(shown["properties"]["imgferry_source_cloud"], "c1-source");
    assert_eq!(shown["properties"]["os"], "LINUX");

    // The image as the real client downloads it: the hash imgferry reported, the new
    // hostname, no NIC bindings.
    let saved = dir.path().join("saved.qcow2");
    openstack(
        "c2-target",
        &["image", "save", "--file", path_str(&saved), &id],
    );
    let data = std::fs::read(&saved).unwrap();
    let sha512: String = Sha512::digest(&data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(sha512, summary["output"]["sha512"].as_str().unwrap());
    assert_eq!(
        shown["properties"]["os_hash_value"].as_str(),
        Some(sha512.as_str())
    );
    assert_eq!(
        shown["properties"]["imgferry_verified"],
        format!("sha512:{sha512}"),
        "marked once imgferry compared Glance's record with what it sent"
    );
    let (os, listing) = listing_of(&saved);
    assert_eq!(os.distro, "debian");
    assert_eq!(os.hostname, "web-02");
    // The identity artefacts migrate's operations remove were in the source (read
    // natively: no second appliance launch) and are gone; everything else is kept.
    let source = native_listing(&debian.image);
    let gone: Vec<&str> = source
        .keys()
        .filter(|path| !listing.contains_key(*path))
        .map(String::as_str)
        .collect();
    assert_eq!(
        gone,
        [
            "/etc/krb5.keytab",
            "/etc/udev/rules.d/70-persistent-net.rules",
            "/etc/udev/rules.d/75-persistent-net-generator.rules",
        ],
        "exactly the identity artefacts are gone"
    );

    // Again: found by provenance before anything is downloaded; still one image.
    let (ok, lines, stderr) = migrate(&args);
    assert!(ok, "{stderr}");
    let again = result(&lines);
    assert_eq!(again["target"]["id"], id.as_str());
    assert_eq!(again["target_reused"], true);
    assert!(again["download"].is_null(), "nothing downloaded: {again}");
    assert_eq!(
        again["output"]["sha512"],
        sha512.as_str(),
        "the verified digest"
    );
    assert_eq!(again["output"]["bytes"], data.len() as u64);
    assert_eq!(images_named("c2-target", &moved).len(), 1);
    drop(guard);
}

#[test]
fn resumes_and_a_leftover_unfinished_upload_never_make_a_second_image() {
    let debian = fixture("debian");
    let dir = common::tempdir();
    let name = unique("c1");
    let moved = format!("{name}-moved");
    let mut guard = ImageGuard::new();
    guard.watch("c1-source", &name);
    guard.watch("c1-target", &moved);
    nova_snapshot(&debian.image, &name);
    let work = dir.path().join("work");
    let base = [
        "migrate",
        &name,
        "--from",
        "c1-source",
        "--to",
        "c1-target",
        "--name",
        &moved,
        "--no-sysprep",
        "--compat",
        "0.10",
        "--work-dir",
        path_str(&work),
    ];
    // What a killed upload leaves: a queued image carrying this request's provenance.
    let (ok, lines, stderr) = migrate(&[&base[..], &["--dry-run"]].concat());
    assert!(ok, "{stderr}");
    let planned = result(&lines)["properties"]["properties"].clone();
    let later = &result(&lines)["set_after_upload"]["imgferry_verified"];
    assert!(later.as_str().unwrap().starts_with("sha512:"), "{lines:?}");
    assert!(!work.exists(), "a dry run creates no work dir");
    assert!(
        images_named("c1-target", &moved).is_empty(),
        "a dry run creates no image"
    );
    // (Created through the library: `openstack image create` without --file reads stdin.)
    let mut fields = serde_json::Map::new();
    fields.insert("name".into(), moved.clone().into());
    fields.insert("disk_format".into(), "qcow2".into());
    fields.insert("container_format".into(), "bare".into());
    for key in [
        "imgferry_request",
        "imgferry_source_image_id",
        "imgferry_source_hash",
    ] {
        fields.insert(key.into(), planned[key].clone());
    }
    let leftover = glance("c1-target").create(&fields).unwrap().id;
    assert_eq!(images_named("c1-target", &moved)[0]["Status"], "queued");

    for stage in ["download", "convert"] {
        let (ok, lines, _) = migrate(&[&base[..], &["--test-stop-after", stage]].concat());
        assert!(!ok, "stop after {stage}: {lines:?}");
    }
    let (ok, lines, stderr) = migrate(&base);
    assert!(ok, "{stderr}\n{lines:?}");
    assert!(
        lines.iter().any(|l| l["type"] == "warning"
            && l["message"]
                .as_str()
                .unwrap()
                .contains(&format!("deleting unfinished target image {leftover}"))),
        "{lines:?}"
    );
    let summary = result(&lines);
    let images = images_named("c1-target", &moved);
    assert_eq!(images.len(), 1, "{images:?}");
    assert_eq!(images[0]["ID"], summary["target"]["id"]);
    assert_eq!(images[0]["Status"], "active");
    assert_ne!(images[0]["ID"].as_str(), Some(leftover.as_str()));
    // The source's content, amended to v2 (no sysprep): same bytes as imgferry reported.
    let saved = dir.path().join("saved.qcow2");
    openstack(
        "c1-target",
        &[
            "image",
            "save",
            "--file",
            path_str(&saved),
            images[0]["ID"].as_str().unwrap(),
        ],
    );
    common::assert_same_content(&debian.image, &saved);
    assert_eq!(
        common::qemu_img_info(&saved)["format-specific"]["data"]["compat"],
        "0.10"
    );

    // An active image without imgferry's verification mark (what a run killed between
    // Glance finishing and imgferry's comparison leaves) is not reused: deleted, and
    // the image made again.
    let unchecked = images[0]["ID"].as_str().unwrap().to_owned();
    openstack(
        "c1-target",
        &[
            "image",
            "unset",
            "--property",
            "imgferry_verified",
            &unchecked,
        ],
    );
    let (ok, lines, stderr) = migrate(&base);
    assert!(ok, "{stderr}\n{lines:?}");
    assert_eq!(result(&lines)["target_reused"], false);
    assert!(
        lines.iter().any(|l| l["type"] == "warning"
            && l["message"].as_str().unwrap().contains(&format!(
                "deleting unfinished target image {unchecked} (active-unverified)"
            ))),
        "{lines:?}"
    );
    let images = images_named("c1-target", &moved);
    assert_eq!(images.len(), 1, "{images:?}");
    assert_ne!(images[0]["ID"].as_str(), Some(unchecked.as_str()));
    drop(guard);
}
