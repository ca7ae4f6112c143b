//! A drop guard for dev-cloud tests: every image name a test registers is looked up and
//! deleted (in every status) when the guard goes out of scope, also when an assertion
//! panicked half-way, so a failing test leaks nothing into the shared dev cloud.

use std::process::Command;

use super::dev_cloud::{clean_env, dev_cloud, openstack};

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

impl Drop for ImageGuard {
    fn drop(&mut self) {
        for (cloud, name) in &self.names {
            let list = ["image", "list", "--name", name, "-f", "value", "-c", "ID"];
            for id in openstack_quietly(cloud, &list).split_whitespace() {
                openstack_quietly(cloud, &["image", "delete", id]);
            }
        }
    }
}
