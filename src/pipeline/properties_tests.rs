use serde_json::json;

use super::*;

fn provenance() -> Provenance {
    Provenance {
        source_cloud: "c1-source".into(),
        source_image_id: "0b8c".into(),
        source_hash: "sha512:ab".into(),
        version: "0.1.0".into(),
        sysprep: "defaults".into(),
        request: "r1".into(),
    }
}

/// What Nova puts on an instance snapshot, plus a few user properties.
fn nova_snapshot() -> BTreeMap<String, Value> {
    let mut map = BTreeMap::new();
    for (key, value) in [
        ("instance_uuid", json!("9f1d")),
        ("user_id", json!("u1")),
        ("image_type", json!("snapshot")),
        ("image_location", json!("snapshot")),
        ("image_state", json!("available")),
        ("owner_id", json!("p1")),
        ("base_image_ref", json!("b1")),
        ("owner_project_name", json!("prod")),
        ("owner_user_name", json!("alice")),
        ("boot_roles", json!("member,reader")),
        ("block_device_mapping", json!("[]")),
        ("bdm_v2", json!("True")),
        ("root_device_name", json!("/dev/vda")),
        ("instance_owner", json!("p1")),
        ("owner_specified.openstack.md5", json!("x")),
        ("owner_specified.openstack.sha256", json!("y")),
        ("os_glance_importing_to_stores", json!("")),
        ("stores", json!("file")),
        ("direct_url", json!("file:///x")),
        ("locations", json!([])),
        ("kernel_id", json!("k")),
        ("ramdisk_id", json!("r")),
        ("hw_disk_bus", json!("scsi")),
        ("hw_qemu_guest_agent", json!("yes")),
        ("os_type", json!("linux")),
        ("os_distro", json!("debian")),
        ("os_hidden", json!(false)),
        ("imgferry_request", json!("an-older-run")),
        ("department", json!("physics")),
    ] {
        map.insert(key.to_owned(), value);
    }
    map
}

#[test]
fn a_nova_snapshot_keeps_hw_os_and_user_properties_and_gains_provenance() {
    let plan = plan_properties(&nova_snapshot(), &PropertyEdits::default(), &provenance()).unwrap();
    let keys: Vec<&str> = plan.properties.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "department",
            "hw_disk_bus",
            "hw_qemu_guest_agent",
            "imgferry_request",
            "imgferry_source_cloud",
            "imgferry_source_hash",
            "imgferry_source_image_id",
            "imgferry_sysprep",
            "imgferry_version",
            "os_distro",
            "os_hidden",
            "os_type",
        ]
    );
    assert_eq!(plan.properties["imgferry_request"], "r1");
    assert_eq!(plan.properties["imgferry_source_hash"], "sha512:ab");
    assert_eq!(plan.dropped.len(), 23);
    let reason = |key: &str| plan.dropped.iter().find(|d| d.key == key).unwrap().reason;
    assert_eq!(reason("instance_uuid"), "describes the source instance");
    assert_eq!(
        reason("owner_specified.openstack.md5"),
        "inherited from the base image, wrong for a snapshot"
    );
    assert_eq!(
        reason("os_glance_importing_to_stores"),
        "reserved by Glance"
    );
    assert_eq!(reason("kernel_id"), "an image id of the source cloud");
}

#[test]
fn property_overrides_and_drop_property_with_prefix() {
    let edits = PropertyEdits {
        set: vec![
            ("os".into(), "LINUX".into()),
            ("hw_disk_bus".into(), "virtio".into()),
        ],
        drop: vec!["department".into(), "hw_qemu*".into(), "absent".into()],
    };
    let plan = plan_properties(&nova_snapshot(), &edits, &provenance()).unwrap();
    assert_eq!(plan.properties["os"], "LINUX");
    assert_eq!(plan.properties["hw_disk_bus"], "virtio");
    assert!(!plan.properties.contains_key("department"));
    assert!(!plan.properties.contains_key("hw_qemu_guest_agent"));
    assert!(plan
        .dropped
        .iter()
        .any(|d| d.key == "department" && d.reason == "--drop-property"));
}

#[test]
fn reserved_provenance_and_core_keys_cannot_be_set() {
    for key in [
        "imgferry_source_hash",
        "os_glance_x",
        "min_disk",
        "checksum",
        "",
    ] {
        let edits = PropertyEdits {
            set: vec![(key.into(), "v".into())],
            drop: vec![],
        };
        let err = plan_properties(&BTreeMap::new(), &edits, &provenance()).unwrap_err();
        assert!(
            matches!(err, PipelineError::InvalidProperty { .. }),
            "{key}: {err}"
        );
    }
    let long = PropertyEdits {
        set: vec![("k".into(), "v".repeat(256))],
        drop: vec![],
    };
    assert!(plan_properties(&BTreeMap::new(), &long, &provenance()).is_err());
}

#[test]
fn more_than_128_properties_are_refused_and_drop_property_is_the_way_out() {
    let mut source = BTreeMap::new();
    for i in 0..122 {
        source.insert(format!("user_{i:03}"), json!("v"));
    }
    // 122 + 6 provenance keys + imgferry_verified = 129.
    let err = plan_properties(&source, &PropertyEdits::default(), &provenance()).unwrap_err();
    assert!(
        matches!(
            err,
            PipelineError::TooManyProperties {
                count: 129,
                limit: 128
            }
        ),
        "{err}"
    );
    let edits = PropertyEdits {
        set: vec![],
        drop: vec!["user_000".into()],
    };
    let plan = plan_properties(&source, &edits, &provenance()).unwrap();
    assert_eq!(plan.properties.len(), 127, "128 with imgferry_verified");
}

#[test]
fn assignments_parse_and_long_provenance_is_truncated_on_a_char_boundary() {
    assert_eq!(
        PropertyEdits::parse_assignment("os=LINUX=x").unwrap(),
        ("os".to_owned(), "LINUX=x".to_owned())
    );
    assert!(PropertyEdits::parse_assignment("novalue").is_err());
    let mut long = provenance();
    long.sysprep = "é".repeat(200);
    let value = long.properties()["imgferry_sysprep"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(value.len() <= MAX_PROPERTY_LEN && value.ends_with("..."));
}
