//! A drop guard for dev-cloud tests: every image name a test registers is looked up and
//! deleted (in every status) when the guard goes out of scope, also when an assertion
//! panicked half-way, so a failing test leaks nothing into the shared dev cloud. And
//! [`create_image`], the `openstack image create` of a test's input, retried when the
//! dev Glance's SQLite answers a concurrent write with "database is locked" (HTTP 500).

use std::process::Command;

use imgferry::cloud::config::{CloudCatalog, ConfigEnv};
use imgferry::cloud::glance::{Glance, ListFilter};
use imgferry::cloud::keystone::{Session, SessionOptions};
use imgferry::report::SilentReporter;

use super::dev_cloud::{clean_env, dev_cloud, openstack, unique_name};

/// Image names to delete on drop, per cloud.
#[derive(Default)]
pub struct ImageGuard {
    names: Vec<(String, String)>,
}

impl ImageGuard {
    /// An empty guard.
    pub fn new() -> Self {
        Self::default()
    }

    /// Deletes every image called `name` in `cloud` when the guard is dropped.
    pub fn watch(&mut self, cloud: &str, name: &str) {
        self.names.push((cloud.to_owned(), name.to_owned()));
    }

    /// A unique image name made from `label`, watched in `cloud`.
    pub fn name(&mut self, cloud: &str, label: &str) -> String {
        let name = unique_name(label);
        self.watch(cloud, &name);
        name
    }
}

/// The ids of the images called `name` in `cloud`.
pub fn ids_named(cloud: &str, name: &str) -> Vec<String> {
    openstack(
        cloud,
        &["image", "list", "--name", name, "-f", "value", "-c", "ID"],
    )
    .split_whitespace()
    .map(str::to_owned)
    .collect()
}

/// `openstack --os-cloud CLOUD image create ARGS... NAME -f value -c id`: the new
/// image's id. A 500 from a locked database (another test writing at the same moment)
/// is retried a few times, after deleting what the failed attempt left under `name`.
pub fn create_image(cloud: &str, name: &str, args: &[&str]) -> String {
    let mut all = vec!["image", "create"];
    all.extend(args);
    all.extend(["-f", "value", "-c", "id", name]);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let dev = dev_cloud();
        let mut cmd = Command::new(dev.var("IMGFERRY_OPENSTACK"));
        clean_env(&mut cmd, dev.clouds_yaml());
        let out = cmd.args(["--os-cloud", cloud]).args(&all).output().unwrap();
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).trim().to_owned();
        }
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            attempt < 4 && stderr.contains("500"),
            "openstack image create {name} failed (attempt {attempt}): {stderr}"
        );
        for id in ids_named(cloud, name) {
            openstack_quietly(cloud, &["image", "delete", &id]);
        }
        std::thread::sleep(std::time::Duration::from_millis(500 * attempt));
    }
}

/// `openstack --os-cloud CLOUD ARGS`'s stdout, or nothing: never panics (it runs in
/// `drop`, possibly while a failed assertion unwinds).
fn openstack_quietly(cloud: &str, args: &[&str]) -> String {
    let dev = dev_cloud();
    let mut cmd = Command::new(dev.var("IMGFERRY_OPENSTACK"));
    clean_env(&mut cmd, dev.clouds_yaml());
    cmd.args(["--os-cloud", cloud]).args(args);
    cmd.output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default()
}

/// A Glance client of the dev cloud `cloud`, or `None` (cleanup goes through the library:
/// two requests instead of two `openstack` processes of a second or more each).
fn glance_quietly(cloud: &str) -> Option<Glance> {
    let env = ConfigEnv::new(
        [(
            "OS_CLIENT_CONFIG_FILE".to_owned(),
            dev_cloud().clouds_yaml().to_owned(),
        )],
        None,
        None,
    );
    let config = CloudCatalog::load(&env).ok()?.select(Some(cloud)).ok()?;
    let session = Session::connect(&config, &SessionOptions::default(), &SilentReporter).ok()?;
    Glance::connect(session).ok()
}

impl Drop for ImageGuard {
    fn drop(&mut self) {
        for (cloud, name) in &self.names {
            let Some(mut glance) = glance_quietly(cloud) else {
                continue;
            };
            let filter = ListFilter {
                name: Some(name.clone()),
                ..ListFilter::default()
            };
            for image in glance.list(&filter).unwrap_or_default() {
                let _ = glance.delete(&image.id);
            }
        }
    }
}
