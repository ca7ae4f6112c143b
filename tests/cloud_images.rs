//! `imgferry images list|show` against the real Keystone + Glance of `scripts/dev-cloud`,
//! cross-checked with the real `openstack` client: listings and records agree, a private
//! image of `source` is invisible to `target`, `--os-project-name`/`--os-project-id` rescoping, pagination, and the
//! errors for a wrong password, an unknown image and an ambiguous name.
//!
//! The dev cloud is started once per test binary (`scripts/dev-cloud up` is idempotent).

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use imgferry::cloud::config::{CloudCatalog, ConfigEnv};
use imgferry::cloud::glance::{Glance, ListFilter};
use imgferry::cloud::keystone::{Session, SessionOptions, REFRESH_MARGIN};
use imgferry::cloud::CloudError;
use imgferry::report::SilentReporter;
use serde_json::Value;

/// What `scripts/dev-cloud env` exports.
struct DevCloud {
    vars: HashMap<String, String>,
}

impl DevCloud {
    fn var(&self, name: &str) -> &str {
        self.vars
            .get(name)
            .unwrap_or_else(|| panic!("scripts/dev-cloud env does not export {name}"))
    }

    fn clouds_yaml(&self) -> &str {
        self.var("OS_CLIENT_CONFIG_FILE")
    }
}

fn dev_cloud() -> &'static DevCloud {
    static DEV_CLOUD: OnceLock<DevCloud> = OnceLock::new();
    DEV_CLOUD.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/dev-cloud");
        let started = Instant::now();
        let up = common::run(Command::new(&script).arg("up"));
        assert!(
            up.status.success(),
            "scripts/dev-cloud up failed:\n{}",
            String::from_utf8_lossy(&up.stderr)
        );
        eprintln!(
            "figure: scripts/dev-cloud up took {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let env = common::run_ok(Command::new(&script).arg("env"));
        let vars = env
            .lines()
            .filter_map(|line| line.strip_prefix("export "))
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
            .collect();
        DevCloud { vars }
    })
}

/// Removes the caller's OS_* variables and points at the dev cloud's clouds.yaml.
fn clean_env(cmd: &mut Command, clouds_yaml: &str) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("OS_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("OS_CLIENT_CONFIG_FILE", clouds_yaml);
}

/// `imgferry images ARGS --os-cloud CLOUD`.
fn images(cloud: &str, args: &[&str]) -> Output {
    let dev = dev_cloud();
    let mut cmd = common::imgferry();
    clean_env(&mut cmd, dev.clouds_yaml());
    cmd.arg("images").args(args).args(["--os-cloud", cloud]);
    common::run(&mut cmd)
}

fn images_json(cloud: &str, args: &[&str]) -> Value {
    let out = images(cloud, &[args, &["--json"]].concat());
    assert!(
        out.status.success(),
        "imgferry images {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let result = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["type"] == "result")
        .unwrap_or_else(|| panic!("no result line in {stdout}"));
    result
}

/// `openstack --os-cloud CLOUD ARGS`, which must succeed.
fn openstack(cloud: &str, args: &[&str]) -> String {
    let dev = dev_cloud();
    let mut cmd = Command::new(dev.var("IMGFERRY_OPENSTACK"));
    clean_env(&mut cmd, dev.clouds_yaml());
    cmd.args(["--os-cloud", cloud]).args(args);
    common::run_ok(&mut cmd)
}

fn unique_name(label: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("imgferry-test-{}-{nanos}-{label}", std::process::id())
}

/// Images created by a test, deleted when it ends (even by a panic).
struct CreatedImages {
    cloud: &'static str,
    ids: Vec<String>,
    _dir: tempfile::TempDir,
    data: PathBuf,
}

impl CreatedImages {
    fn new(cloud: &'static str) -> Self {
        let dir = common::tempdir();
        let data = dir.path().join("data.raw");
        std::fs::write(&data, common::random_bytes(1 << 20, 7)).unwrap();
        Self {
            cloud,
            ids: Vec::new(),
            _dir: dir,
            data,
        }
    }

    /// `openstack image create --file ... NAME` (raw, bare, private); returns the record.
    fn create(&mut self, name: &str) -> Value {
        let data = self.data.display().to_string();
        self.create_with(
            name,
            &[
                "--file",
                &data,
                "--disk-format",
                "raw",
                "--container-format",
                "bare",
                "--private",
                "--property",
                "imgferry_test=cross-check",
            ],
        )
    }

    /// `openstack image create NAME` with no file (the CLI then reads the empty stdin).
    fn create_record(&mut self, name: &str) -> Value {
        self.create_with(name, &["--private"])
    }

    fn create_with(&mut self, name: &str, args: &[&str]) -> Value {
        let dev = dev_cloud();
        let mut cmd = Command::new(dev.var("IMGFERRY_OPENSTACK"));
        clean_env(&mut cmd, dev.clouds_yaml());
        cmd.args(["--os-cloud", self.cloud, "image", "create", "-f", "json"])
            .args(args)
            .arg(name);
        let out = common::run(&mut cmd);
        if !out.status.success() {
            // The record may exist even though the upload failed: find it so Drop deletes it.
            let ids = openstack(
                self.cloud,
                &["image", "list", "--name", name, "-f", "value", "-c", "ID"],
            );
            self.ids.extend(ids.split_whitespace().map(str::to_owned));
            panic!("openstack image create {name} failed: {}", stderr_of(&out));
        }
        let record: Value = serde_json::from_slice(&out.stdout).unwrap();
        self.ids.push(record["id"].as_str().unwrap().to_owned());
        record
    }
}

impl Drop for CreatedImages {
    fn drop(&mut self) {
        if !self.ids.is_empty() {
            let mut args = vec!["image", "delete"];
            args.extend(self.ids.iter().map(String::as_str));
            let dev = dev_cloud();
            let mut cmd = Command::new(dev.var("IMGFERRY_OPENSTACK"));
            clean_env(&mut cmd, dev.clouds_yaml());
            let _ = cmd.args(["--os-cloud", self.cloud]).args(&args).output();
        }
    }
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn list_and_show_agree_with_the_openstack_cli_and_private_images_stay_private() {
    let mut created = CreatedImages::new("c1-source");
    let name = unique_name("crosscheck");
    let made = created.create(&name);
    let id = made["id"].as_str().unwrap();

    // The listing has the image with the same fields the openstack CLI shows.
    let listed = images_json("c1-source", &["list"]);
    let ours: Vec<&Value> = listed["images"].as_array().unwrap().iter().collect();
    let mine = ours
        .iter()
        .find(|i| i["id"] == id)
        .unwrap_or_else(|| panic!("{id} not listed: {listed}"));
    assert_eq!(mine["name"], name.as_str());
    assert_eq!(mine["status"], "active");
    assert_eq!(mine["disk_format"], "raw");
    assert_eq!(mine["size"], 1 << 20);
    assert_eq!(mine["visibility"], "private");
    assert_eq!(listed["project"]["name"], "source");
    let theirs: Value = serde_json::from_str(&openstack(
        "c1-source",
        &["image", "list", "--long", "-f", "json"],
    ))
    .unwrap();
    for image in theirs.as_array().unwrap() {
        // Other tests create images meanwhile: status and size settle only once active,
        // and visibility may change (a test shares one of its images); this test's own
        // image is checked in full below.
        if let Some(ours) = ours.iter().find(|i| i["id"] == image["ID"]) {
            assert_eq!(ours["name"], image["Name"], "{image}");
            assert_eq!(ours["disk_format"], image["Disk Format"], "{image}");
            if ours["status"] == "active" && image["Status"] == "active" {
                assert_eq!(ours["size"], image["Size"], "{image}");
            }
        }
    }
    let cli_mine = theirs
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["ID"] == id)
        .unwrap_or_else(|| panic!("{id} not in the CLI's listing"));
    assert_eq!(cli_mine["Visibility"], "private", "{cli_mine}");
    assert_eq!(cli_mine["Size"], 1 << 20, "{cli_mine}");

    // `show` by id and by name gives the record `openstack image show` gives.
    let cli: Value = serde_json::from_str(&openstack(
        "c1-source",
        &["image", "show", "-f", "json", id],
    ))
    .unwrap();
    for wanted in [id, name.as_str()] {
        let shown = images_json("c1-source", &["show", wanted]);
        let image = &shown["image"];
        for key in [
            "id",
            "name",
            "status",
            "disk_format",
            "container_format",
            "size",
            "checksum",
            "visibility",
            "owner",
            "min_disk",
            "min_ram",
            "protected",
        ] {
            assert_eq!(image[key], cli[key], "{key} of {wanted}");
        }
        // The openstack CLI files Glance's other top-level keys under "properties".
        for key in ["os_hash_algo", "os_hash_value", "imgferry_test"] {
            assert_eq!(image[key], cli["properties"][key], "{key} of {wanted}");
        }
        assert_eq!(image["imgferry_test"], "cross-check");
        assert_eq!(image["os_hash_algo"], "sha512");
    }
    let human = images("c1-source", &["show", id]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains(&name) && text.contains("imgferry_test") && text.contains("cross-check"),
        "{text}"
    );

    // The same private image is invisible to the other project, by listing, id and name.
    let target = images_json("c1-target", &["list"]);
    assert!(
        target["images"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["id"] != id),
        "{target}"
    );
    assert_eq!(target["project"]["name"], "target");
    for wanted in [id, name.as_str()] {
        let out = images("c1-target", &["show", wanted]);
        assert_eq!(out.status.code(), Some(1), "{wanted}");
        let stderr = stderr_of(&out);
        assert!(
            stderr.contains(&format!(
                "error: no image `{wanted}` is visible to project target"
            )),
            "{stderr}"
        );
    }
}

#[test]
fn an_ambiguous_name_lists_the_candidates() {
    let mut created = CreatedImages::new("c1-source");
    let name = unique_name("twin");
    let first = created.create(&name)["id"].as_str().unwrap().to_owned();
    let second = created.create(&name)["id"].as_str().unwrap().to_owned();
    let out = images("c1-source", &["show", &name]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains(&format!("error: 2 images are named `{name}`")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&first) && stderr.contains(&second),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: name the image by its id"),
        "{stderr}"
    );
    // By id, each twin is found.
    assert_eq!(
        images_json("c1-source", &["show", &second])["image"]["id"],
        second.as_str()
    );
}

#[test]
fn an_unknown_image_is_a_clear_error() {
    for wanted in [
        "no-such-image-anywhere",
        "00000000-0000-4000-8000-000000000000",
    ] {
        let out = images("c1-source", &["show", wanted]);
        assert_eq!(out.status.code(), Some(1));
        let stderr = stderr_of(&out);
        assert!(
            stderr.contains(&format!(
                "error: no image `{wanted}` is visible to project source ("
            )),
            "{stderr}"
        );
        assert!(stderr.contains("hint: `imgferry images list`"), "{stderr}");
        assert_eq!(
            stderr.lines().filter(|l| l.starts_with("error:")).count(),
            1,
            "{stderr}"
        );
    }
}

#[test]
fn a_wrong_password_is_a_clear_error_that_never_shows_a_password() {
    let dev = dev_cloud();
    let wrong = "wrong-Pw-3vQ8-must-not-leak";
    let dir = common::tempdir();
    let clouds = dir.path().join("clouds.yaml");
    std::fs::write(
        &clouds,
        format!(
            "clouds:\n  bad:\n    auth:\n      auth_url: {}\n      username: source-user\n      password: {wrong}\n      project_name: source\n      user_domain_name: Default\n      project_domain_name: Default\n",
            dev.var("IMGFERRY_DEV_C1_KEYSTONE_URL")
        ),
    )
    .unwrap();
    for extra in [&[][..], &["--json", "-vv"][..]] {
        let mut cmd = common::imgferry();
        clean_env(&mut cmd, clouds.to_str().unwrap());
        let out = common::run(
            cmd.args(["images", "list", "--os-cloud", "bad"])
                .args(extra),
        );
        assert_eq!(out.status.code(), Some(1));
        let stderr = stderr_of(&out);
        let all = format!("{}{stderr}", String::from_utf8_lossy(&out.stdout));
        assert!(
            stderr.contains(&format!(
                "error: authentication of cloud `bad` at {}/auth/tokens failed: HTTP 401: The request you have made requires authentication.",
                dev.var("IMGFERRY_DEV_C1_KEYSTONE_URL")
            )),
            "{stderr}"
        );
        assert!(
            stderr.contains("hint: check the credentials of cloud `bad`"),
            "{stderr}"
        );
        assert!(!all.contains(wrong), "{all}");
        assert!(!all.contains(dev.var("IMGFERRY_DEV_PASSWORD")), "{all}");
    }
}

#[test]
fn os_project_flags_rescope_to_projects_the_credentials_may_use() {
    let listed = images_json("c1-source", &["list", "--os-project-name", "source"]);
    assert_eq!(listed["project"]["name"], "source");
    let by_id = listed["project"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        images_json("c1-source", &["list", "--os-project-id", &by_id])["project"]["id"],
        by_id.as_str()
    );

    let out = images("c1-source", &["list", "--os-project-name", "target"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains(
            "error: project `target` is not among the projects these credentials may use"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("hint: projects available: source ({by_id})")),
        "{stderr}"
    );

    // OS_PROJECT_NAME / OS_PROJECT_ID do the same, as for the openstack CLI.
    let dev = dev_cloud();
    for (var, value) in [
        ("OS_PROJECT_NAME", "target"),
        ("OS_PROJECT_ID", by_id.as_str()),
    ] {
        let mut cmd = common::imgferry();
        clean_env(&mut cmd, dev.clouds_yaml());
        cmd.env(var, value)
            .args(["images", "list", "--json", "--os-cloud", "c1-source"]);
        let out = common::run(&mut cmd);
        let expected_ok = var == "OS_PROJECT_ID";
        assert_eq!(
            out.status.success(),
            expected_ok,
            "{var}: {}",
            stderr_of(&out)
        );
    }
}

#[test]
fn listing_follows_pagination_and_tokens_are_renewed() {
    // In c2-source, which no other test writes to: paging through a listing another
    // test changes can hit a deleted marker (HTTP 400).
    let mut created = CreatedImages::new("c2-source");
    let prefix = unique_name("page");
    for index in 0..2 {
        created.create_record(&format!("{prefix}-{index}"));
    }
    let dev = dev_cloud();
    let env = ConfigEnv::new(
        [(
            "OS_CLIENT_CONFIG_FILE".to_owned(),
            dev.clouds_yaml().to_owned(),
        )],
        None,
        None,
    );
    let config = CloudCatalog::load(&env)
        .unwrap()
        .select(Some("c2-source"))
        .unwrap();
    let session = Session::connect(&config, &SessionOptions::default(), &SilentReporter).unwrap();
    let token_ms = session.token().issue_time.as_millis();
    let mut glance = Glance::connect(session).unwrap();
    assert!(
        glance.api_version().starts_with("2."),
        "{}",
        glance.api_version()
    );

    let started = Instant::now();
    let all = glance.list(&ListFilter::default()).unwrap();
    let list_ms = started.elapsed().as_millis();
    for page_size in [1, 2] {
        let paged = glance
            .list(&ListFilter {
                name: None,
                page_size: Some(page_size),
            })
            .unwrap();
        let mut ids: Vec<&str> = paged.iter().map(|i| i.id.as_str()).collect();
        ids.sort_unstable();
        let count = ids.len();
        ids.dedup();
        assert_eq!(
            ids.len(),
            count,
            "a page was repeated with page size {page_size}"
        );
        for id in &created.ids {
            assert!(
                ids.contains(&id.as_str()),
                "{id} missing with page size {page_size}"
            );
        }
    }
    assert!(all.len() >= 2);

    // A token with too little life left for the next operation is renewed.
    let before = glance.session().token().expires_at.unwrap();
    glance
        .session_mut()
        .ensure_valid_for(Duration::from_secs(24 * 3600))
        .unwrap();
    assert_eq!(glance.session().renewals(), 1);
    assert!(glance.session().token().expires_at.unwrap() >= before);
    let named = glance
        .list(&ListFilter {
            name: Some(format!("{prefix}-1")),
            page_size: None,
        })
        .unwrap();
    assert_eq!(named.len(), 1);
    assert_eq!(
        named[0].name.as_deref(),
        Some(format!("{prefix}-1").as_str())
    );

    let missing = glance.resolve("definitely-not-an-image").unwrap_err();
    assert!(
        matches!(missing, CloudError::ImageNotFound { .. }),
        "{missing}"
    );
    eprintln!(
        "figure: token issue {token_ms} ms; list of {} images {list_ms} ms",
        all.len()
    );
}

/// The real Keystone issues tokens for an hour (scripts/dev-cloud); rather than wait for
/// one to near its end, the work ahead is made longer than what is left of it.
#[test]
fn a_token_is_renewed_ahead_of_expiry_only_when_it_would_not_outlive_the_work() {
    let dev = dev_cloud();
    let env = ConfigEnv::new(
        [(
            "OS_CLIENT_CONFIG_FILE".to_owned(),
            dev.clouds_yaml().to_owned(),
        )],
        None,
        None,
    );
    let config = CloudCatalog::load(&env)
        .unwrap()
        .select(Some("c1-source"))
        .unwrap();
    let mut session =
        Session::connect(&config, &SessionOptions::default(), &SilentReporter).unwrap();
    let left = session
        .token()
        .remaining()
        .expect("Keystone sent expires_at");
    let slack = Duration::from_secs(120);
    assert!(
        left > REFRESH_MARGIN + slack * 2,
        "the dev cloud's tokens live {left:?}"
    );

    // Work the token outlives, margin included: no new token.
    session.ensure_valid_for(Duration::ZERO).unwrap();
    session
        .ensure_valid_for(left - REFRESH_MARGIN - slack)
        .unwrap();
    assert_eq!(session.renewals(), 0);

    // Work that would end inside the margin: renewed before it starts.
    let expires_at = session.token().expires_at.unwrap();
    session
        .ensure_valid_for(left - REFRESH_MARGIN + slack)
        .unwrap();
    assert_eq!(session.renewals(), 1);
    assert!(session.token().expires_at.unwrap() >= expires_at);
    // The new token works.
    let mut glance = Glance::connect(session).unwrap();
    glance.list(&ListFilter::default()).unwrap();
    assert_eq!(glance.session().renewals(), 1);
}

#[test]
fn catalog_options_verify_and_endpoint_override_against_the_real_cloud() {
    let dev = dev_cloud();
    let dir = common::tempdir();
    let clouds = dir.path().join("clouds.yaml");
    let auth = format!(
        "    auth:\n      auth_url: {}\n      username: source-user\n      password: {}\n      project_name: source\n      user_domain_name: Default\n      project_domain_name: Default\n",
        dev.var("IMGFERRY_DEV_C1_KEYSTONE_URL"),
        dev.var("IMGFERRY_DEV_PASSWORD")
    );
    let glance = dev.var("IMGFERRY_DEV_C1_GLANCE_URL");
    let cloud = |name: &str, extra: &str| format!("  {name}:\n{auth}{extra}");
    let yaml = [
        "clouds:\n".to_owned(),
        cloud(
            "internal",
            "    interface: internalURL\n    verify: false\n",
        ),
        cloud("nowhere", "    region_name: Nowhere\n"),
        cloud(
            "override",
            &format!("    region_name: Nowhere\n    image_endpoint_override: {glance}/v2/\n"),
        ),
        cloud(
            "unreachable",
            "    image_endpoint_override: http://127.0.0.1:1/\n",
        ),
    ]
    .concat();
    std::fs::write(&clouds, yaml).unwrap();
    let run = |name: &str| {
        let mut cmd = common::imgferry();
        clean_env(&mut cmd, clouds.to_str().unwrap());
        common::run(cmd.args(["images", "list", "--os-cloud", name]))
    };

    let out = run("internal");
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("warning: TLS certificates of cloud `internal` are not verified"),
        "{}",
        stderr_of(&out)
    );

    let out = run("nowhere");
    assert_eq!(out.status.code(), Some(1));
    let stderr = stderr_of(&out);
    assert!(stderr.contains("error: the service catalog has no `image` endpoint for interface public in region Nowhere"), "{stderr}");
    assert!(
        stderr.contains(&format!("public RegionOne {glance}")),
        "{stderr}"
    );

    let out = run("override");
    assert!(
        out.status.success(),
        "the override bypasses the catalog: {}",
        stderr_of(&out)
    );

    let out = run("unreachable");
    assert_eq!(out.status.code(), Some(1));
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains("error: cannot reach http://127.0.0.1:1/"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(dev.var("IMGFERRY_DEV_PASSWORD")),
        "{stderr}"
    );
}

#[test]
fn application_credentials_and_tokens_authenticate_for_real() {
    let dev = dev_cloud();
    let keystone = dev.var("IMGFERRY_DEV_C1_KEYSTONE_URL");
    let token = openstack("c1-source", &["token", "issue", "-f", "value", "-c", "id"]);
    let credential_name = unique_name("appcred");
    let credential: Value = serde_json::from_str(&openstack(
        "c1-source",
        &[
            "application",
            "credential",
            "create",
            "-f",
            "json",
            &credential_name,
        ],
    ))
    .unwrap();
    struct DeleteCredential<'a>(&'a str);
    impl Drop for DeleteCredential<'_> {
        fn drop(&mut self) {
            let dev = dev_cloud();
            let mut cmd = Command::new(dev.var("IMGFERRY_OPENSTACK"));
            clean_env(&mut cmd, dev.clouds_yaml());
            let _ = cmd
                .args([
                    "--os-cloud",
                    "c1-source",
                    "application",
                    "credential",
                    "delete",
                    self.0,
                ])
                .output();
        }
    }
    let _cleanup = DeleteCredential(&credential_name);
    let (id, secret) = (
        credential["ID"].as_str().unwrap(),
        credential["Secret"].as_str().unwrap(),
    );

    let dir = common::tempdir();
    let clouds = dir.path().join("clouds.yaml");
    std::fs::write(
        &clouds,
        format!(
            "clouds:\n  appcred:\n    auth_type: v3applicationcredential\n    auth:\n      auth_url: {keystone}\n      application_credential_id: {id}\n      application_credential_secret: {secret}\n  token:\n    auth_type: v3token\n    auth:\n      auth_url: {keystone}\n      token: {}\n      project_name: source\n      project_domain_id: default\n",
            token.trim()
        ),
    )
    .unwrap();
    for name in ["appcred", "token"] {
        let mut cmd = common::imgferry();
        clean_env(&mut cmd, clouds.to_str().unwrap());
        let out = common::run(cmd.args(["images", "list", "--json", "-vv", "--os-cloud", name]));
        assert!(out.status.success(), "{name}: {}", stderr_of(&out));
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            stderr_of(&out)
        );
        assert!(
            all.contains(r#""project":{"id":"#) && all.contains(r#""name":"source""#),
            "{all}"
        );
        assert!(
            !all.contains(secret) && !all.contains(token.trim()),
            "{name}: {all}"
        );
    }

    // An application credential cannot be rescoped.
    let mut cmd = common::imgferry();
    clean_env(&mut cmd, clouds.to_str().unwrap());
    let out = common::run(cmd.args([
        "images",
        "list",
        "--os-cloud",
        "appcred",
        "--os-project-name",
        "target",
    ]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_of(&out).contains(
            "error: cannot switch to project `target`: an application credential is bound"
        ),
        "{}",
        stderr_of(&out)
    );
}

/// `imgferry ARGS` in the dev cloud's environment.
fn imgferry(args: &[&str]) -> Output {
    let dev = dev_cloud();
    let mut cmd = common::imgferry();
    clean_env(&mut cmd, dev.clouds_yaml());
    common::run(cmd.args(args))
}

#[test]
fn cloud_options_work_before_and_after_the_subcommand() {
    let mut created = CreatedImages::new("c1-source");
    let name = unique_name("global-options");
    let id = created.create(&name)["id"].as_str().unwrap().to_owned();
    let stdout = |out: Output| {
        assert!(out.status.success(), "{}", stderr_of(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    let cloud = ["--os-cloud", "c1-source", "--os-project-name", "source"];

    // As `openstack --os-cloud prod image show X` puts them, and after.
    let before = stdout(imgferry(&[&cloud[..], &["images", "show", &id]].concat()));
    let after = stdout(imgferry(&[&["images", "show", &id], &cloud[..]].concat()));
    assert!(before.contains(&name), "{before}");
    assert_eq!(before, after);

    // Listings: other tests add images meanwhile, so compare the header and this image's row.
    let row = |listing: &str| -> Vec<String> {
        let lines: Vec<&str> = listing.lines().collect();
        let mine = lines.iter().filter(|l| l.contains(&id));
        lines
            .first()
            .into_iter()
            .chain(mine)
            .map(|l| l.to_string())
            .collect()
    };
    let before = stdout(imgferry(&["--os-cloud", "c1-source", "images", "list"]));
    let after = stdout(imgferry(&["images", "list", "--os-cloud", "c1-source"]));
    assert_eq!(row(&before).len(), 2, "{before}");
    assert_eq!(row(&before), row(&after));

    // migrate takes --os-cloud (and the project options) as its source side, as
    // OS_CLOUD did and does; a project the credentials may not use is refused.
    let dir = common::tempdir();
    let out_file = dir.path().join("out.raw");
    let out_path = out_file.display().to_string();
    let wrong = imgferry(&[
        "--os-cloud",
        "c1-source",
        "--os-project-name",
        "target",
        "migrate",
        &id,
        "--to-file",
        &out_path,
        "--dry-run",
    ]);
    assert_eq!(wrong.status.code(), Some(1), "{}", stderr_of(&wrong));
    assert!(
        stderr_of(&wrong).contains("project `target`"),
        "{}",
        stderr_of(&wrong)
    );
    let planned = stdout(imgferry(&[
        "--os-cloud",
        "c1-source",
        "--os-project-name",
        "source",
        "--json",
        "migrate",
        &id,
        "--to-file",
        &out_path,
        "--no-sysprep",
        "--dry-run",
        "--work-dir",
        &dir.path().join("work").display().to_string(),
    ]));
    assert!(planned.contains(r#""type":"result""#), "{planned}");
    assert!(!out_file.exists());
}
