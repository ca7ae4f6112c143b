//! The dev cloud (`scripts/dev-cloud`) for integration tests: started once per test
//! binary, its `env` read, commands run against it with the caller's `OS_*` removed.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// What `scripts/dev-cloud env` exports.
pub struct DevCloud {
    vars: HashMap<String, String>,
}

impl DevCloud {
    /// One exported variable (panics when missing).
    pub fn var(&self, name: &str) -> &str {
        self.vars
            .get(name)
            .unwrap_or_else(|| panic!("scripts/dev-cloud env does not export {name}"))
    }

    /// The clouds.yaml naming c1-source ... c2-admin.
    pub fn clouds_yaml(&self) -> &str {
        self.var("OS_CLIENT_CONFIG_FILE")
    }

    /// The passwords the dev cloud's users have (for leak checks).
    pub fn passwords(&self) -> [&str; 3] {
        [
            self.var("IMGFERRY_DEV_PASSWORD"),
            self.var("IMGFERRY_DEV_ADMIN_PASSWORD"),
            self.var("IMGFERRY_DEV_SERVICE_PASSWORD"),
        ]
    }
}

/// Starts the dev cloud (idempotent) and reads its environment, once per process.
pub fn dev_cloud() -> &'static DevCloud {
    static DEV_CLOUD: OnceLock<DevCloud> = OnceLock::new();
    DEV_CLOUD.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/dev-cloud");
        let up = super::run(Command::new(&script).arg("up"));
        assert!(
            up.status.success(),
            "scripts/dev-cloud up failed:\n{}",
            String::from_utf8_lossy(&up.stderr)
        );
        let env = super::run_ok(Command::new(&script).arg("env"));
        let vars = env
            .lines()
            .filter_map(|line| line.strip_prefix("export "))
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
            .collect();
        DevCloud { vars }
    })
}

/// Removes the caller's OS_* variables and points at `clouds_yaml`.
pub fn clean_env(cmd: &mut Command, clouds_yaml: &str) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("OS_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("OS_CLIENT_CONFIG_FILE", clouds_yaml);
}

/// `openstack --os-cloud CLOUD ARGS`, which must succeed; returns stdout.
pub fn openstack(cloud: &str, args: &[&str]) -> String {
    let dev = dev_cloud();
    let mut cmd = Command::new(dev.var("IMGFERRY_OPENSTACK"));
    clean_env(&mut cmd, dev.clouds_yaml());
    cmd.args(["--os-cloud", cloud]).args(args);
    super::run_ok(&mut cmd)
}

/// A name no other test run uses.
pub fn unique_name(label: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("imgferry-test-{}-{nanos}-{label}", std::process::id())
}
