//! Typed reads from one mapping of the merged configuration tree.
//!
//! Owns the conversion of untyped YAML/JSON/environment values into strings, booleans and
//! secrets, and the naming of the key at fault (`clouds.prod.auth.auth_url` for a file,
//! `OS_AUTH_URL` for the environment). Errors name keys and expected types, never values:
//! the value may be a password.

use serde_json::{Map, Value};

use crate::cloud::{CloudError, Secret};

/// How keys are named in error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyStyle {
    /// Keys of a file: dotted paths below `clouds.NAME`.
    File,
    /// Keys of the `envvars` cloud: the `OS_*` variable each came from.
    Environment,
}

/// One mapping of the configuration, with where it came from.
#[derive(Debug, Clone, Copy)]
pub(super) struct Section<'a> {
    pub map: &'a Map<String, Value>,
    /// Dotted path of this mapping (file style), e.g. `clouds.prod.auth`.
    pub path: &'a str,
    pub origin: &'a str,
    pub style: KeyStyle,
}

impl<'a> Section<'a> {
    /// The name of `key` of this section as the user wrote it.
    pub fn key_name(&self, key: &str) -> String {
        match self.style {
            KeyStyle::File => format!("{}.{key}", self.path),
            KeyStyle::Environment => format!("OS_{}", key.to_ascii_uppercase()),
        }
    }

    /// An error about `key` of this section.
    pub fn invalid(&self, key: &str, problem: impl Into<String>) -> CloudError {
        CloudError::ConfigInvalid {
            origin: self.origin.to_owned(),
            key: self.key_name(key),
            problem: problem.into(),
        }
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// A string value; numbers are accepted (`project_id: 123123`); an empty string counts
    /// as absent, as with an exported but empty `OS_*` variable.
    pub fn string(&self, key: &str) -> Result<Option<String>, CloudError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(other) => Err(self.invalid(key, format!("must be a string, not {}", kind(other)))),
        }
    }

    /// A secret value; reported like [`Section::string`] but never copied into a `String`
    /// that could be formatted.
    pub fn secret(&self, key: &str) -> Result<Option<Secret>, CloudError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(Secret::new(s.as_str()))),
            Some(Value::Number(n)) => Ok(Some(Secret::new(n.to_string()))),
            Some(other) => Err(self.invalid(key, format!("must be a string, not {}", kind(other)))),
        }
    }

    /// A boolean; the strings environment variables carry (`true`, `False`, `1`, `no`) too.
    pub fn boolean(&self, key: &str) -> Result<Option<bool>, CloudError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => match s.to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" | "1" => Ok(Some(true)),
                "false" | "no" | "off" | "0" => Ok(Some(false)),
                _ => Err(self.invalid(key, "must be true or false")),
            },
            Some(Value::Number(n)) => match n.as_u64() {
                Some(1) => Ok(Some(true)),
                Some(0) => Ok(Some(false)),
                _ => Err(self.invalid(key, "must be true or false")),
            },
            Some(other) => {
                Err(self.invalid(key, format!("must be true or false, not {}", kind(other))))
            }
        }
    }

    /// A nested mapping.
    pub fn mapping(&self, key: &str) -> Result<Option<&'a Map<String, Value>>, CloudError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(map)),
            Some(other) => {
                Err(self.invalid(key, format!("must be a mapping, not {}", kind(other))))
            }
        }
    }

    /// A list.
    pub fn list(&self, key: &str) -> Result<Option<&'a Vec<Value>>, CloudError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items)),
            Some(other) => Err(self.invalid(key, format!("must be a list, not {}", kind(other)))),
        }
    }
}

/// What kind of value `value` is, for error messages that must not quote it.
pub(super) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn section(map: &Map<String, Value>, style: KeyStyle) -> Section<'_> {
        Section {
            map,
            path: "clouds.x.auth",
            origin: "clouds.yaml",
            style,
        }
    }

    #[test]
    fn strings_accept_numbers_and_treat_empty_as_absent() {
        let map = json!({"a": "x", "b": 123, "c": "", "d": [1], "e": null});
        let map = map.as_object().unwrap();
        let s = section(map, KeyStyle::File);
        assert_eq!(s.string("a").unwrap().as_deref(), Some("x"));
        assert_eq!(s.string("b").unwrap().as_deref(), Some("123"));
        assert_eq!(s.string("c").unwrap(), None);
        assert_eq!(s.string("e").unwrap(), None);
        assert_eq!(s.string("missing").unwrap(), None);
        let err = s.string("d").unwrap_err().to_string();
        assert!(err.contains("clouds.x.auth.d"), "{err}");
        assert!(err.contains("a list"), "{err}");
    }

    #[test]
    fn booleans_accept_environment_spellings() {
        let map = json!({"t": "True", "f": "0", "b": false, "bad": "maybe"});
        let map = map.as_object().unwrap();
        let s = section(map, KeyStyle::Environment);
        assert_eq!(s.boolean("t").unwrap(), Some(true));
        assert_eq!(s.boolean("f").unwrap(), Some(false));
        assert_eq!(s.boolean("b").unwrap(), Some(false));
        let err = s.boolean("bad").unwrap_err().to_string();
        assert!(err.contains("OS_BAD"), "{err}");
        assert!(!err.contains("maybe"), "values are never quoted: {err}");
    }

    #[test]
    fn secret_type_errors_do_not_quote_the_value() {
        let map = json!({"password": {"nested": "hunter2"}});
        let map = map.as_object().unwrap();
        let err = section(map, KeyStyle::File)
            .secret("password")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.contains("clouds.x.auth.password"), "{err}");
    }
}
