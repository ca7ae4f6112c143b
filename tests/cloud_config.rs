//! Cloud configuration without a server: clouds.yaml + secure.yaml merging, the search
//! order, the `envvars` cloud, cloud selection, error messages that name file and key,
//! and secrets that never reach Debug output, errors or the command's output.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use imgferry::cloud::config::{
    ApplicationCredentialRef, AuthMethod, CloudCatalog, CloudConfig, ConfigEnv, DomainRef,
    Interface, ProjectRef, Scope, UserRef,
};
use imgferry::cloud::CloudError;

const PASSWORD: &str = "pw-Zq81-never-print-me";
const APP_SECRET: &str = "appsecret-Ky72-never-print-me";
const TOKEN: &str = "gAAAAA-token-Wx55-never-print-me";

fn write(path: &Path, text: &str) -> PathBuf {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, text).unwrap();
    path.to_owned()
}

/// A synthetic environment rooted in `dir`: cwd `dir/cwd`, home `dir/home`, no XDG dirs
/// outside `dir`, and the given variables.
fn env_in(dir: &Path, vars: &[(&str, &str)]) -> ConfigEnv {
    let mut all: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    all.push((
        "XDG_CONFIG_DIRS".into(),
        dir.join("xdg-site").display().to_string(),
    ));
    ConfigEnv::new(all, Some(dir.join("cwd")), Some(dir.join("home")))
}

fn select(env: &ConfigEnv, name: Option<&str>) -> Result<CloudConfig, CloudError> {
    CloudCatalog::load(env)?.select(name)
}

fn password_cloud(name: &str, auth_url: &str) -> String {
    format!(
        "clouds:\n  {name}:\n    auth:\n      auth_url: {auth_url}\n      username: alice\n      password: {PASSWORD}\n      project_name: demo\n      user_domain_name: Default\n      project_domain_name: Default\n    region_name: RegionOne\n"
    )
}

#[test]
fn secure_yaml_is_deep_merged_over_clouds_yaml() {
    let dir = common::tempdir();
    write(
        &dir.path().join("cwd/clouds.yaml"),
        "clouds:\n  prod:\n    auth:\n      auth_url: https://keystone.example:5000\n      username: alice\n      project_name: demo\n    region_name: RegionOne\n",
    );
    write(
        &dir.path().join("cwd/secure.yaml"),
        &format!(
            "clouds:\n  prod:\n    auth:\n      password: {PASSWORD}\n    region_name: RegionTwo\n"
        ),
    );
    let cloud = select(&env_in(dir.path(), &[]), Some("prod")).unwrap();
    let AuthMethod::Password { user, password } = &cloud.auth.method else {
        panic!("password auth expected: {cloud:?}");
    };
    assert_eq!(password.expose(), PASSWORD);
    assert_eq!(
        user,
        &UserRef::Name {
            name: "alice".into(),
            domain: DomainRef::Id("default".into())
        }
    );
    assert_eq!(
        cloud.region_name.as_deref(),
        Some("RegionTwo"),
        "secure.yaml wins"
    );
    assert_eq!(
        cloud.auth.auth_url.as_str(),
        "https://keystone.example:5000/v3"
    );
    assert!(
        cloud.origin.contains("clouds.yaml") && cloud.origin.contains("secure.yaml"),
        "{}",
        cloud.origin
    );
}

#[test]
fn search_order_follows_openstacksdk() {
    let dir = common::tempdir();
    let d = dir.path();
    let home_file = write(
        &d.join("home/.config/openstack/clouds.yaml"),
        &password_cloud("home", "http://h/v3"),
    );
    let env = env_in(d, &[]);
    assert_eq!(CloudCatalog::load(&env).unwrap().names(), ["home"]);

    // $XDG_CONFIG_HOME/openstack comes before ~/.config/openstack.
    write(
        &d.join("xdg/openstack/clouds.yml"),
        &password_cloud("xdg", "http://x/v3"),
    );
    let xdg = d.join("xdg").display().to_string();
    let env = env_in(d, &[("XDG_CONFIG_HOME", &xdg)]);
    assert_eq!(CloudCatalog::load(&env).unwrap().names(), ["xdg"]);

    // The current directory comes first of all; .json is read too.
    write(
        &d.join("cwd/clouds.json"),
        r#"{"clouds": {"cwd": {"auth": {"auth_url": "http://c/v3", "username": "u", "password": "p"}}}}"#,
    );
    let env = env_in(d, &[("XDG_CONFIG_HOME", &xdg)]);
    assert_eq!(CloudCatalog::load(&env).unwrap().names(), ["cwd"]);

    // OS_CLIENT_CONFIG_FILE beats every directory.
    let explicit = write(
        &d.join("elsewhere/my-clouds.yaml"),
        &password_cloud("explicit", "http://e/v3"),
    );
    let env = env_in(
        d,
        &[
            ("XDG_CONFIG_HOME", &xdg),
            ("OS_CLIENT_CONFIG_FILE", explicit.to_str().unwrap()),
        ],
    );
    let catalog = CloudCatalog::load(&env).unwrap();
    assert_eq!(catalog.names(), ["explicit"]);
    assert_eq!(catalog.files(), [explicit]);

    // ... and must exist when set.
    let missing = d.join("nope.yaml");
    let env = env_in(d, &[("OS_CLIENT_CONFIG_FILE", missing.to_str().unwrap())]);
    let err = CloudCatalog::load(&env).unwrap_err();
    assert!(err.to_string().contains("nope.yaml"), "{err}");
    assert!(home_file.exists());
}

#[test]
fn environment_variables_make_the_envvars_cloud() {
    let dir = common::tempdir();
    let vars = [
        ("OS_AUTH_URL", "https://keystone.example/identity"),
        ("OS_USERNAME", "bob"),
        ("OS_PASSWORD", PASSWORD),
        ("OS_PROJECT_NAME", "ops"),
        ("OS_USER_DOMAIN_NAME", "Users"),
        ("OS_PROJECT_DOMAIN_ID", "abc123"),
        ("OS_REGION_NAME", "North"),
        ("OS_INTERFACE", "internal"),
        ("OS_IDENTITY_API_VERSION", "3"),
        ("OS_INSECURE", "true"),
    ];
    let cloud = select(&env_in(dir.path(), &vars), None).unwrap();
    assert_eq!(cloud.name, "envvars");
    assert_eq!(
        cloud.auth.auth_url.as_str(),
        "https://keystone.example/identity/v3"
    );
    assert_eq!(
        cloud.auth.scope,
        Scope::Project(ProjectRef::Name {
            name: "ops".into(),
            domain: DomainRef::Id("abc123".into())
        })
    );
    let AuthMethod::Password { user, .. } = &cloud.auth.method else {
        panic!("{cloud:?}");
    };
    assert_eq!(
        user,
        &UserRef::Name {
            name: "bob".into(),
            domain: DomainRef::Name("Users".into())
        }
    );
    assert_eq!(cloud.region_name.as_deref(), Some("North"));
    assert_eq!(cloud.interface, Interface::Internal);
    assert!(!cloud.tls.verify);

    // With a clouds.yaml too, the environment cloud is still the default...
    write(
        &dir.path().join("cwd/clouds.yaml"),
        &password_cloud("filed", "http://f/v3"),
    );
    let env = env_in(dir.path(), &vars);
    assert_eq!(select(&env, None).unwrap().name, "envvars");
    // ...but a name (or OS_CLOUD) picks the file's cloud, with OS_REGION_NAME applied.
    let filed = select(&env, Some("filed")).unwrap();
    assert_eq!(filed.auth.auth_url.as_str(), "http://f/v3");
    assert_eq!(filed.region_name.as_deref(), Some("North"));
    let mut with_os_cloud = vars.to_vec();
    with_os_cloud.push(("OS_CLOUD", "filed"));
    assert_eq!(
        select(&env_in(dir.path(), &with_os_cloud), None)
            .unwrap()
            .name,
        "filed"
    );
}

#[test]
fn application_credentials_and_tokens_from_the_environment() {
    let dir = common::tempdir();
    let cloud = select(
        &env_in(
            dir.path(),
            &[
                ("OS_AUTH_TYPE", "v3applicationcredential"),
                ("OS_AUTH_URL", "http://k:5000/v3"),
                ("OS_APPLICATION_CREDENTIAL_ID", "ac-id"),
                ("OS_APPLICATION_CREDENTIAL_SECRET", APP_SECRET),
                ("OS_PROJECT_NAME", "ignored-for-app-creds"),
            ],
        ),
        None,
    )
    .unwrap();
    let AuthMethod::ApplicationCredential { credential, secret } = &cloud.auth.method else {
        panic!("{cloud:?}");
    };
    assert_eq!(credential, &ApplicationCredentialRef::Id("ac-id".into()));
    assert_eq!(secret.expose(), APP_SECRET);
    assert_eq!(cloud.auth.scope, Scope::Unscoped);

    let cloud = select(
        &env_in(
            dir.path(),
            &[
                ("OS_AUTH_TYPE", "v3token"),
                ("OS_AUTH_URL", "http://k:5000/v3"),
                ("OS_TOKEN", TOKEN),
                ("OS_PROJECT_ID", "p1"),
            ],
        ),
        None,
    )
    .unwrap();
    assert!(matches!(&cloud.auth.method, AuthMethod::Token { token } if token.expose() == TOKEN));
    assert_eq!(
        cloud.auth.scope,
        Scope::Project(ProjectRef::Id("p1".into()))
    );
}

#[test]
fn a_file_used_with_the_openstack_cli_works_unchanged() {
    let dir = common::tempdir();
    let cacert = write(
        &dir.path().join("ca.pem"),
        "not read until a connection is made",
    );
    let yaml = format!(
        r#"# as written for python-openstackclient
clouds:
  legacy:
    auth:
      auth_url: https://keystone.example:5000/v2.0/
      username: carol
      password: "{PASSWORD}"
      tenant_name: 123123
      default_domain_id: dom1
    identity_api_version: '3'
    volume_api_version: 3
    interface: internalURL
    regions:
      - name: Lab
        values: {{}}
      - Other
    cacert: {cacert}
    block_storage_endpoint_override: https://cinder.example/v3
    image_endpoint_override: https://glance.example:9292
    some-future-key: {{ nested: [1, 2] }}
  top-level:
    auth-type: password
    auth_url: http://k/v3
    username: dave
    password: x
    user_id: u-9
    project_id: p-9
    verify: false
    image-api-version: "2"
"#,
        cacert = cacert.display()
    );
    write(&dir.path().join("cwd/clouds.yaml"), &yaml);
    let env = env_in(dir.path(), &[]);
    let legacy = select(&env, Some("legacy")).unwrap();
    assert_eq!(
        legacy.auth.auth_url.as_str(),
        "https://keystone.example:5000/v3"
    );
    assert_eq!(
        legacy.auth.scope,
        Scope::Project(ProjectRef::Name {
            name: "123123".into(),
            domain: DomainRef::Id("dom1".into())
        })
    );
    assert_eq!(legacy.interface, Interface::Internal);
    assert_eq!(legacy.region_name.as_deref(), Some("Lab"));
    assert_eq!(legacy.tls.cacert.as_deref(), Some(cacert.as_path()));
    assert!(legacy.tls.verify);
    assert_eq!(
        legacy.image_endpoint_override.as_ref().map(|u| u.as_str()),
        Some("https://glance.example:9292/")
    );

    // Dashes in keys mean underscores (openstacksdk normalizes them); not in cloud names.
    let top = select(&env, Some("top-level")).unwrap();
    assert!(matches!(
        select(&env, Some("top_level")),
        Err(CloudError::UnknownCloud { .. })
    ));
    assert!(
        matches!(&top.auth.method, AuthMethod::Password { user: UserRef::Id(id), .. } if id == "u-9")
    );
    assert_eq!(top.auth.scope, Scope::Project(ProjectRef::Id("p-9".into())));
    assert!(!top.tls.verify);
}

#[test]
fn selection_needs_a_name_when_several_clouds_exist() {
    let dir = common::tempdir();
    let one = password_cloud("solo", "http://s/v3");
    write(&dir.path().join("cwd/clouds.yaml"), &one);
    assert_eq!(select(&env_in(dir.path(), &[]), None).unwrap().name, "solo");

    let two = format!(
        "{}{}",
        password_cloud("a", "http://a/v3"),
        password_cloud("b", "http://b/v3").replacen("clouds:\n", "", 1)
    );
    write(&dir.path().join("cwd/clouds.yaml"), &two);
    let err = select(&env_in(dir.path(), &[]), None).unwrap_err();
    assert!(
        matches!(&err, CloudError::NoCloudSelected { available, .. } if available == &["a", "b"]),
        "{err}"
    );
    assert!(err.hint().unwrap().contains("--os-cloud"));

    let empty = common::tempdir();
    let err = select(&env_in(empty.path(), &[]), None).unwrap_err();
    assert!(matches!(err, CloudError::NoConfiguration { .. }), "{err}");
}

#[test]
fn unknown_cloud_lists_the_clouds_and_files() {
    let dir = common::tempdir();
    let file = write(
        &dir.path().join("cwd/clouds.yaml"),
        &format!(
            "{}{}",
            password_cloud("alpha", "http://a/v3"),
            password_cloud("beta", "http://b/v3").replacen("clouds:\n", "", 1)
        ),
    );
    let err = select(&env_in(dir.path(), &[]), Some("gamma")).unwrap_err();
    assert_eq!(err.to_string(), "cloud `gamma` is not defined");
    let hint = err.hint().unwrap();
    assert!(hint.contains("alpha, beta"), "{hint}");
    assert!(hint.contains(&file.display().to_string()), "{hint}");

    // The same through the command line: one error line, the hint, exit 1.
    let out = common::run(isolated(dir.path()).args(["images", "list", "--os-cloud", "gamma"]));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("error: cloud `gamma` is not defined"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: clouds defined: alpha, beta"),
        "{stderr}"
    );
    assert!(!stderr.contains(PASSWORD) && !String::from_utf8_lossy(&out.stdout).contains(PASSWORD));
}

#[test]
fn errors_name_the_file_and_the_key() {
    let dir = common::tempdir();
    let path = dir.path().join("cwd/clouds.yaml");
    let env = env_in(dir.path(), &[]);
    let case = |yaml: &str, name: &str| {
        write(&path, yaml);
        select(&env, Some(name)).unwrap_err()
    };

    let err = case(
        "clouds:\n  x:\n    auth:\n      username: u\n      password: p\n",
        "x",
    );
    let text = err.to_string();
    assert!(
        text.contains(&path.display().to_string()) && text.contains("clouds.x.auth.auth_url"),
        "{text}"
    );

    let err = case("clouds:\n  x:\n    auth: {auth_url: 'http://k/v3', username: u, password: p}\n    verify: maybe\n", "x");
    assert!(err.to_string().contains("clouds.x.verify"), "{err}");

    let err = case(
        "clouds:\n  x:\n    auth_type: v3oidcpassword\n    auth: {auth_url: 'http://k/v3'}\n",
        "x",
    );
    assert!(
        err.to_string().contains("clouds.x.auth_type")
            && err.to_string().contains("v3oidcpassword"),
        "{err}"
    );

    let err = case("clouds:\n  x:\n    identity_api_version: 2\n    auth: {auth_url: 'http://k', username: u, password: p}\n", "x");
    assert!(
        err.to_string().contains("clouds.x.identity_api_version"),
        "{err}"
    );

    let err = case(
        &format!("clouds:\n  x:\n    auth: {{password: {PASSWORD}\n"),
        "x",
    );
    let text = err.to_string();
    assert!(matches!(err, CloudError::ConfigSyntax { .. }), "{text}");
    assert!(
        text.contains("line") && text.contains(&path.display().to_string()),
        "{text}"
    );
    assert!(!text.contains(PASSWORD), "{text}");

    let err = case("- just\n- a list\n", "x");
    assert!(
        err.to_string().contains("top level must be a mapping"),
        "{err}"
    );

    let big = format!(
        "# {}\n",
        "x".repeat(imgferry::cloud::config::MAX_CONFIG_FILE_BYTES as usize)
    );
    let err = case(&big, "x");
    assert!(matches!(err, CloudError::ConfigTooLarge { .. }), "{err}");

    // An environment value names its variable.
    let env = env_in(
        dir.path(),
        &[
            ("OS_AUTH_URL", "ftp://k"),
            ("OS_USERNAME", "u"),
            ("OS_PASSWORD", PASSWORD),
        ],
    );
    let _ = std::fs::remove_file(&path);
    let err = select(&env, None).unwrap_err();
    assert!(err.to_string().contains("OS_AUTH_URL"), "{err}");
}

#[test]
fn secrets_never_appear_in_debug_output_or_errors() {
    let dir = common::tempdir();
    let yaml = format!(
        "clouds:\n  pw:\n    auth: {{auth_url: 'http://127.0.0.1:1/v3', username: u, password: '{PASSWORD}', project_name: p}}\n  ac:\n    auth_type: v3applicationcredential\n    auth: {{auth_url: 'http://127.0.0.1:1/v3', application_credential_id: i, application_credential_secret: '{APP_SECRET}'}}\n  tok:\n    auth_type: token\n    auth: {{auth_url: 'http://127.0.0.1:1/v3', token: '{TOKEN}', project_id: p}}\n  badtype:\n    auth: {{auth_url: 'http://k/v3', username: u, password: [{PASSWORD}]}}\n"
    );
    write(&dir.path().join("cwd/clouds.yaml"), &yaml);
    let env = env_in(dir.path(), &[]);
    for name in ["pw", "ac", "tok"] {
        let cloud = select(&env, Some(name)).unwrap();
        let debug = format!("{cloud:?} {cloud:#?}");
        for secret in [PASSWORD, APP_SECRET, TOKEN] {
            assert!(!debug.contains(secret), "{name}: {debug}");
        }
        assert!(debug.contains("***"), "{debug}");
    }
    let err = select(&env, Some("badtype")).unwrap_err();
    assert!(!format!("{err} {err:?}").contains(PASSWORD), "{err:?}");

    // Through the binary, with an unreachable Keystone: one clear line, a hint, no secret
    // in any output, not even with -v or --json.
    for name in ["pw", "ac", "tok"] {
        for extra in [&["-v"][..], &["--json", "-vv"][..]] {
            let out = common::run(
                isolated(dir.path())
                    .args(["images", "list", "--os-cloud", name])
                    .args(extra),
            );
            assert_eq!(out.status.code(), Some(1), "{name}");
            let all = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            for secret in [PASSWORD, APP_SECRET, TOKEN] {
                assert!(!all.contains(secret), "{name} {extra:?}: {all}");
            }
            assert!(
                all.contains("cannot reach http://127.0.0.1:1/v3/auth/tokens"),
                "{all}"
            );
            assert!(all.contains("hint"), "{all}");
        }
    }
}

/// The imgferry binary with no OS_* variables from the caller, home and cwd in `dir`.
fn isolated(dir: &Path) -> Command {
    let mut cmd = common::imgferry();
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("OS_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("HOME", dir.join("home"))
        .env("XDG_CONFIG_HOME", dir.join("home/.config"))
        .env("XDG_CONFIG_DIRS", dir.join("xdg-site"))
        .env("OS_CLIENT_CONFIG_FILE", dir.join("cwd/clouds.yaml"))
        .current_dir(dir);
    cmd
}
