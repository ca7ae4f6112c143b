//! Where cloud configuration comes from: the search for clouds.yaml and secure.yaml, the
//! reading and parsing of those untrusted files, and the `OS_*` environment variables.
//!
//! Owns the search order (that of openstacksdk: `OS_CLIENT_CONFIG_FILE` /
//! `OS_CLIENT_SECURE_FILE` first, then `clouds.{yaml,yml,json}` in the current directory,
//! `$XDG_CONFIG_HOME/openstack`, `~/.config/openstack`, `$XDG_CONFIG_DIRS/openstack` and
//! `/etc/openstack`; the first file found wins), the size cap, and the deep merge. It must
//! not interpret keys: that is `resolve`'s job. It reads the process environment only in
//! [`ConfigEnv::from_process`], so everything else can be tested with a synthetic one.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::cloud::CloudError;

/// Largest configuration file read. A real clouds.yaml is a few KiB; the cap stops a
/// mistaken or hostile path (a disk image, /dev/zero) from being read into memory.
pub const MAX_CONFIG_FILE_BYTES: u64 = 1024 * 1024;

/// File names tried in each directory, in order (openstacksdk's suffix order).
const SUFFIXES: [&str; 3] = ["yaml", "yml", "json"];

/// `OS_*` variables that select or locate configuration rather than describe a cloud: with
/// only these set, there is no `envvars` cloud.
const SELECTOR_VARIABLES: [&str; 5] = [
    "OS_CLOUD",
    "OS_REGION_NAME",
    "OS_CLIENT_CONFIG_FILE",
    "OS_CLIENT_SECURE_FILE",
    "OS_CLOUD_NAME",
];

/// A snapshot of what configuration loading reads from the process: environment
/// variables, the current directory and the home directory.
#[derive(Debug, Clone, Default)]
pub struct ConfigEnv {
    vars: BTreeMap<String, String>,
    cwd: Option<PathBuf>,
    home: Option<PathBuf>,
}

impl ConfigEnv {
    /// The real process environment.
    pub fn from_process() -> Self {
        let vars = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        Self {
            vars,
            cwd: std::env::current_dir().ok(),
            home: std::env::var_os("HOME").map(PathBuf::from),
        }
    }

    /// A synthetic environment (for tests and embedding).
    pub fn new(
        vars: impl IntoIterator<Item = (String, String)>,
        cwd: Option<PathBuf>,
        home: Option<PathBuf>,
    ) -> Self {
        Self {
            vars: vars.into_iter().collect(),
            cwd,
            home,
        }
    }

    /// One variable, if set and not empty.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// The directories searched for clouds.yaml and secure.yaml, in order, without
    /// duplicates.
    pub fn search_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        if let Some(cwd) = &self.cwd {
            dirs.push(cwd.clone());
        }
        let home_config = self.home.as_ref().map(|h| h.join(".config"));
        let xdg_config = self.var("XDG_CONFIG_HOME").map(PathBuf::from);
        if let Some(base) = xdg_config.clone().or_else(|| home_config.clone()) {
            dirs.push(base.join("openstack"));
        }
        if let Some(base) = home_config {
            dirs.push(base.join("openstack"));
        }
        let site_dirs = self.var("XDG_CONFIG_DIRS").unwrap_or("/etc/xdg");
        for dir in site_dirs.split(':').filter(|d| !d.is_empty()) {
            dirs.push(Path::new(dir).join("openstack"));
        }
        dirs.push(PathBuf::from("/etc/openstack"));
        let mut unique = Vec::with_capacity(dirs.len());
        for dir in dirs {
            if !unique.contains(&dir) {
                unique.push(dir);
            }
        }
        unique
    }

    /// The `envvars` cloud: every `OS_*` variable (bar the selectors and test-runner
    /// variables), named by its lowercased suffix; `None` when only selectors are set.
    pub fn envvars_cloud(&self) -> Option<Map<String, Value>> {
        let relevant: Vec<(&String, &String)> = self
            .vars
            .iter()
            .filter(|(k, _)| k.starts_with("OS_"))
            .filter(|(k, _)| {
                !["OS_TEST", "OS_STD", "OS_LOG"]
                    .iter()
                    .any(|p| k.starts_with(p))
            })
            .collect();
        if relevant
            .iter()
            .all(|(k, _)| SELECTOR_VARIABLES.contains(&k.as_str()))
        {
            return None;
        }
        let cloud = relevant
            .into_iter()
            .filter(|(k, _)| !SELECTOR_VARIABLES.contains(&k.as_str()) || *k == "OS_REGION_NAME")
            .map(|(k, v)| {
                (
                    k["OS_".len()..].to_ascii_lowercase(),
                    Value::String(v.clone()),
                )
            })
            .collect();
        Some(cloud)
    }
}

/// Which file of a kind was found, and what was looked at.
#[derive(Debug, Clone, Default)]
pub struct FoundFile {
    pub path: Option<PathBuf>,
    pub searched: Vec<PathBuf>,
}

/// Finds the first existing `BASE.{yaml,yml,json}` in the search directories, after the
/// file named by `override_var` (which, when set, must exist).
pub fn find_file(env: &ConfigEnv, base: &str, override_var: &str) -> Result<FoundFile, CloudError> {
    let mut found = FoundFile::default();
    if let Some(path) = env.var(override_var) {
        let path = PathBuf::from(path);
        found.searched.push(path.clone());
        if !path.exists() {
            return Err(CloudError::ConfigRead {
                path,
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("{override_var} names this file, which does not exist"),
                ),
            });
        }
        found.path = Some(path);
        return Ok(found);
    }
    for dir in env.search_dirs() {
        for suffix in SUFFIXES {
            let path = dir.join(format!("{base}.{suffix}"));
            found.searched.push(path.clone());
            if path.is_file() {
                found.path = Some(path);
                return Ok(found);
            }
        }
    }
    Ok(found)
}

/// Reads and parses one configuration file (JSON if it ends in `.json`, else YAML) into a
/// mapping, keys as written.
pub fn read_tree(path: &Path) -> Result<Map<String, Value>, CloudError> {
    let read_error = |source| CloudError::ConfigRead {
        path: path.to_owned(),
        source,
    };
    let file = fs_err::File::open(path).map_err(read_error)?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_CONFIG_FILE_BYTES {
        return Err(CloudError::ConfigTooLarge {
            path: path.to_owned(),
            limit: MAX_CONFIG_FILE_BYTES,
        });
    }
    let is_json = path.extension().is_some_and(|e| e == "json");
    let format = if is_json { "JSON" } else { "YAML" };
    let syntax = |message: String| CloudError::ConfigSyntax {
        path: path.to_owned(),
        format,
        message,
    };
    let text = std::str::from_utf8(&bytes).map_err(|e| syntax(format!("not UTF-8 ({e})")))?;
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    let value: Value = if is_json {
        serde_json::from_str(text).map_err(|e| syntax(e.to_string()))?
    } else {
        parse_yaml(text).map_err(syntax)?
    };
    match value {
        Value::Object(map) => Ok(map),
        Value::Null => Ok(Map::new()),
        other => Err(syntax(format!(
            "the top level must be a mapping, not {}",
            super::value::kind(&other)
        ))),
    }
}

/// Parses YAML with serde-saphyr's default budgets (depth, node and alias limits) and
/// without source snippets in errors: a snippet could show a password on the failing line.
fn parse_yaml(text: &str) -> Result<Value, String> {
    let options = serde_saphyr::options! { with_snippet: false };
    serde_saphyr::from_str_with_options(text, options).map_err(|e| {
        let message = e.to_string();
        match e.location() {
            Some(at) if !message.contains("line") => {
                format!("{message} (line {}, column {})", at.line(), at.column())
            }
            _ => message,
        }
    })
}

/// Replaces `-` by `_` in every key of one cloud's settings, recursively, as openstacksdk
/// does (`region-name` means `region_name`). Cloud names themselves are left alone.
pub fn normalize_keys(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k.replace('-', "_"), normalize_keys(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(normalize_keys).collect()),
        other => other,
    }
}

/// Merges `overlay` into `base`: mappings merge key by key, anything else replaces.
pub fn deep_merge(base: &mut Map<String, Value>, overlay: Map<String, Value>) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(Value::Object(into)), Value::Object(from)) => deep_merge(into, from),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deep_merge_merges_mappings_and_replaces_the_rest() {
        let mut base = json!({"clouds": {"a": {"auth": {"username": "u", "auth_url": "x"}, "region_name": "R1"}}});
        let overlay =
            json!({"clouds": {"a": {"auth": {"password": "p"}, "region_name": "R2"}, "b": {}}});
        let (Value::Object(base_map), Value::Object(overlay_map)) = (&mut base, overlay) else {
            panic!("objects expected");
        };
        deep_merge(base_map, overlay_map);
        assert_eq!(
            base,
            json!({"clouds": {"a": {"auth": {"username": "u", "auth_url": "x", "password": "p"}, "region_name": "R2"}, "b": {}}})
        );
    }

    #[test]
    fn yaml_parses_into_typed_json_values() {
        let value = parse_yaml("a: 3\nb: false\nc: \"3\"\nd: ~\ne-f: [x]\n").unwrap();
        assert_eq!(
            normalize_keys(value),
            json!({"a": 3, "b": false, "c": "3", "d": null, "e_f": ["x"]})
        );
    }

    #[test]
    fn yaml_syntax_errors_say_where_without_quoting_the_line() {
        let err = parse_yaml("clouds:\n  a:\n    auth: {password: hunter2\n").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.contains("line"), "{err}");
    }

    #[test]
    fn envvars_cloud_needs_more_than_selectors() {
        let env = |pairs: &[(&str, &str)]| {
            ConfigEnv::new(
                pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())),
                None,
                None,
            )
        };
        assert!(env(&[("OS_CLOUD", "x"), ("OS_REGION_NAME", "R")])
            .envvars_cloud()
            .is_none());
        let cloud = env(&[
            ("OS_AUTH_URL", "http://k/v3"),
            ("OS_TEST_X", "1"),
            ("OS_CLOUD", "x"),
        ])
        .envvars_cloud()
        .unwrap();
        assert_eq!(Value::Object(cloud), json!({"auth_url": "http://k/v3"}));
    }
}
