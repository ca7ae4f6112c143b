//! Every fixture, every operation (`--operations all`, a different `--machine-id` mode
//! on some, user-account keeping alice on some), in ONE appliance launch each: sysprep
//! runs through the library on a copy, the full listing (path, kind, mode, sha256)
//! before and after must differ in exactly the paths the run reported — nothing else
//! changed — and the disk's filesystem, PV and VG UUIDs in exactly the ones reported
//! (fs-uuids, lvm-uuids), with no reference to an old filesystem UUID left in fstab or
//! GRUB's config; the fixture's seeded artefacts must be gone and its controls kept,
//! the filesystems must check clean in the appliance, and the committed image must pass
//! `qemu-img check`.

mod common;
mod sysprep_support;

use std::collections::BTreeSet;

use imgferry::guest::libguestfs::{Access, Session};
use imgferry::guest::{BlockId, BlockKind, GuestFs, GuestFsExt};
use imgferry::report::SilentReporter;
use imgferry::sysprep::{self, Action, Hostname, MachineIdMode, Options, UserAccounts, Words};
use sysprep_support::{differences, fixture, has, listing, Listing};

const NEW_HOSTNAME: &str = "clone-02.example.net";
const CERN_STATE: &str = "/var/lib/cern-private-cloud-addons/state";

/// Seeded identity every fixture has, which the default run must remove.
const REMOVED_EVERYWHERE: [&str; 12] = [
    "/etc/ssh/ssh_host_rsa_key",
    "/etc/ssh/ssh_host_ed25519_key.pub",
    "/etc/krb5.keytab",
    "/etc/udev/rules.d/70-persistent-net.rules",
    "/etc/udev/rules.d/75-persistent-net-generator.rules",
    "/var/lib/systemd/random-seed",
    "/var/lib/systemd/credential.secret",
    "/var/lib/cloud/data/instance-id",
    "/root/.bash_history",
    "/home/alice/.ssh/id_ed25519",
    "/etc/passwd-",
    CERN_STATE,
];

/// Controls every fixture has, which must survive untouched (`.bashrc` only where
/// user-account keeps alice).
const KEPT_EVERYWHERE: [&str; 11] = [
    "/etc/ssh/sshd_config",
    "/etc/ssh/ssh_known_hosts",
    "/etc/ssh/backup_host_keys/README",
    "/etc/krb5.conf",
    "/etc/udev/rules.d/99-local.rules",
    "/var/lib/cloud/seed/nocloud-net/meta-data",
    "/var/log/README",
    "/var/log/ceph/ceph.audit",
    "/var/log/httpd/modsec_audit.txt",
    "/etc/Pegasus/cimserver_planned.conf",
    "/usr/share/doc/imgferry-fixture/README.bak",
];

/// Files that name filesystems by UUID, read back to check fs-uuids rewrote them.
const UUID_REFERENCES: [&str; 4] = [
    "/etc/fstab",
    "/boot/grub2/grub.cfg",
    "/boot/grub/grub.cfg",
    "/etc/default/grub",
];

struct Outcome {
    before: Listing,
    after: Listing,
    /// File changes.
    reported: Vec<sysprep::Change>,
    /// `new-uuid` changes.
    renewed: Vec<sysprep::Change>,
    ids_before: Vec<BlockId>,
    ids_after: Vec<BlockId>,
    /// UUID_REFERENCES present after the run, with their content.
    references: Vec<(String, String)>,
}

/// How a fixture's run differs from the others.
struct Variant {
    machine_id: MachineIdMode,
    /// user-account keeps alice (`--keep-user-accounts alice`).
    keep_alice: bool,
}

fn run_fixture(name: &'static str, variant: &Variant) -> Outcome {
    let fixture = fixture(name);
    let dir = common::tempdir();
    let image = fixture.copy(dir.path(), "sysprep");
    let clock = std::time::Instant::now();
    let lap = |what: &str| eprintln!("{name}: {what} at {:.1}s", clock.elapsed().as_secs_f64());
    let mut session = Session::open(&image, Access::ReadWrite).expect("launch the appliance");
    lap("launched");
    let roots = session.inspect().expect("inspect");
    assert_eq!(roots.len(), 1, "{name}: one OS root");
    let os = roots[0].clone();
    assert_eq!(
        os.distro,
        fixture.facts["expect"]["distro"].as_str().unwrap(),
        "{name}"
    );
    session.mount_os(&os).expect("mount");
    let before = listing(&mut session);
    let ids_before = session.block_ids().expect("block ids");
    lap("listed");
    session.unmount_all().expect("unmount");

    let options = Options {
        operations: sysprep::select(&[Words::Operations("all".to_owned())]).expect("all"),
        machine_id: variant.machine_id,
        delete: vec![CERN_STATE.to_owned()],
        hostname: Some(Hostname::parse(NEW_HOSTNAME).unwrap()),
        user_accounts: UserAccounts {
            keep: if variant.keep_alice {
                BTreeSet::from(["alice".to_owned()])
            } else {
                BTreeSet::new()
            },
            ..UserAccounts::default()
        },
        ..Options::default()
    };
    let reports = sysprep::run(&mut session, &options, &SilentReporter).expect("sysprep");
    assert_eq!(reports.len(), 1);
    let (renewed, reported) = reports[0]
        .changes
        .iter()
        .cloned()
        .partition(|c| c.action == Action::NewUuid);
    lap("sysprep done");

    let ids_after = session.block_ids().expect("block ids after");
    session.mount_os(&os).expect("mount again");
    let after = listing(&mut session);
    let mut references = Vec::new();
    for path in UUID_REFERENCES {
        if let Some((resolved, _)) = session.stat(path).expect("stat") {
            let text = session.read(&resolved, 1 << 20).expect("read");
            references.push((path.to_owned(), String::from_utf8_lossy(&text).into_owned()));
        }
    }
    lap("listed again");
    let checks = session.check_filesystems().expect("fs checks");
    assert!(
        checks.iter().any(|c| c.clean == Some(true)),
        "{name}: no filesystem was checked: {checks:?}"
    );
    for check in checks {
        assert_ne!(
            check.clean,
            Some(false),
            "{name}: {} ({}) does not check clean:\n{}",
            check.device,
            check.fstype,
            check.detail
        );
    }
    lap("checked");
    session.commit().expect("commit");
    lap("committed");
    common::assert_qemu_check_clean(&image);
    Outcome {
        before,
        after,
        reported,
        renewed,
        ids_before,
        ids_after,
        references,
    }
}

/// The UUIDs changed in exactly the reported filesystems, PVs and VGs, to the reported
/// values; every ext4/XFS/btrfs/swap filesystem and every PV and VG got a new one; no
/// file read back names an old filesystem UUID, and each that did now names the new.
fn assert_uuid_accounting(name: &str, o: &Outcome) {
    assert_eq!(
        o.ids_before.len(),
        o.ids_after.len(),
        "{name}: {:?}",
        o.ids_after
    );
    for (was, now) in o.ids_before.iter().zip(&o.ids_after) {
        assert_eq!((&was.kind, &was.device), (&now.kind, &now.device), "{name}");
        let reported: Vec<_> = o.renewed.iter().filter(|c| c.path == was.device).collect();
        let settable = match &was.kind {
            BlockKind::Filesystem { fstype } => {
                ["ext4", "xfs", "btrfs", "swap"].contains(&fstype.as_str())
            }
            BlockKind::PhysicalVolume | BlockKind::VolumeGroup => true,
        };
        if !settable {
            assert!(
                reported.is_empty(),
                "{name}: {was:?} reported: {reported:?}"
            );
            assert_eq!(
                was.uuid, now.uuid,
                "{name}: {} changed unreported",
                was.device
            );
            continue;
        }
        assert_eq!(reported.len(), 1, "{name}: {was:?} reported {reported:?}");
        assert_ne!(was.uuid, now.uuid, "{name}: {} kept its UUID", was.device);
        assert_eq!(
            reported[0].removed_lines,
            std::slice::from_ref(&was.uuid),
            "{name}"
        );
        assert_eq!(
            reported[0].added_lines,
            std::slice::from_ref(&now.uuid),
            "{name}"
        );
    }
    assert_eq!(
        o.renewed.len(),
        o.ids_before
            .iter()
            .filter(|id| o.renewed.iter().any(|c| c.path == id.device))
            .count(),
        "{name}: a reported device that does not exist: {:?}",
        o.renewed
    );
    for (path, text) in &o.references {
        let lower = text.to_ascii_lowercase();
        for (was, now) in o.ids_before.iter().zip(&o.ids_after) {
            if !matches!(was.kind, BlockKind::Filesystem { .. }) || was.uuid == now.uuid {
                continue;
            }
            assert!(
                !lower.contains(&was.uuid.to_ascii_lowercase()),
                "{name}: {path} still names {} ({}):\n{text}",
                was.uuid,
                was.device
            );
        }
    }
}

/// The listings differ in exactly the reported paths, and each reported path changed
/// the way reported.
fn assert_exact_accounting(name: &str, o: &Outcome) {
    let changed = differences(&o.before, &o.after);
    let reported: BTreeSet<String> = o.reported.iter().map(|c| c.path.clone()).collect();
    let unreported: Vec<_> = changed.difference(&reported).collect();
    let phantom: Vec<_> = reported.difference(&changed).collect();
    assert!(
        unreported.is_empty(),
        "{name}: changed but not reported: {unreported:?}"
    );
    assert!(
        phantom.is_empty(),
        "{name}: reported but unchanged: {phantom:?}"
    );
    for change in &o.reported {
        let (was, now) = (has(&o.before, &change.path), has(&o.after, &change.path));
        let consistent = match change.action {
            Action::Remove => was && !now,
            Action::Create => !was && now,
            Action::Edit | Action::Truncate => was && now,
            Action::NewUuid => unreachable!("partitioned out"),
        };
        assert!(
            consistent,
            "{name}: {change:?} (before: {was}, after: {now})"
        );
    }
}

fn content_is(o: &Outcome, path: &str, text: &str) {
    let got = o.after.get(path).map(String::as_str).unwrap_or("<missing>");
    assert!(
        got.starts_with("file ") && got.ends_with(&hex_sha256(text.as_bytes())),
        "{path}: expected content {text:?}, got {got}"
    );
}

fn hex_sha256(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn assert_common(name: &str, o: &Outcome, variant: &Variant) {
    assert_exact_accounting(name, o);
    assert_uuid_accounting(name, o);
    for path in REMOVED_EVERYWHERE {
        assert!(has(&o.before, path), "{name}: fixture lacks {path}");
        assert!(!has(&o.after, path), "{name}: {path} should be gone");
    }
    for path in KEPT_EVERYWHERE {
        assert!(has(&o.before, path), "{name}: fixture lacks control {path}");
        assert_eq!(
            o.before.get(path),
            o.after.get(path),
            "{name}: control {path} changed"
        );
    }
    match variant.machine_id {
        MachineIdMode::Uninitialized => content_is(o, "/etc/machine-id", "uninitialized\n"),
        MachineIdMode::Empty => content_is(o, "/etc/machine-id", ""),
        MachineIdMode::Remove => assert!(!has(&o.after, "/etc/machine-id"), "{name}"),
    }
    content_is(o, "/etc/hostname", &format!("{NEW_HOSTNAME}\n"));
    assert!(has(&o.after, "/tmp") && !o.after.keys().any(|k| k.starts_with("/tmp/")));
    // flag-reconfiguration
    assert!(!has(&o.before, "/.unconfigured"), "{name}");
    content_is(o, "/.unconfigured", "");
    // user-account
    let alice = [
        "/home/alice",
        "/home/alice/.bashrc",
        "/etc/passwd",
        "/etc/shadow",
        "/etc/group",
        "/etc/gshadow",
    ];
    for path in alice {
        assert!(has(&o.before, path), "{name}: fixture lacks {path}");
        if variant.keep_alice {
            assert_eq!(o.before.get(path), o.after.get(path), "{name}: {path}");
        } else if path.starts_with("/home/") {
            assert!(!has(&o.after, path), "{name}: {path} should be gone");
        } else {
            line_gone(o, path);
        }
    }
}

fn line_gone(o: &Outcome, path: &str) {
    assert_ne!(
        o.before.get(path),
        o.after.get(path),
        "{path} should be edited"
    );
    assert!(has(&o.after, path), "{path} should still exist");
}

#[test]
fn debian_ext4_mbr() {
    let variant = Variant {
        machine_id: MachineIdMode::Uninitialized,
        keep_alice: true,
    };
    let o = run_fixture("debian", &variant);
    assert_common("debian", &o, &variant);
    line_gone(&o, "/etc/systemd/network/50-storage.network");
    line_gone(&o, "/etc/network/interfaces");
    line_gone(&o, "/etc/network/interfaces.d/eth1");
    line_gone(&o, "/etc/hosts");
    assert_eq!(
        o.before.get("/etc/systemd/network/60-mgmt.network"),
        o.after.get("/etc/systemd/network/60-mgmt.network")
    );
    // The dbus copy is a symlink to /etc/machine-id here: left, it follows.
    assert!(o.after["/var/lib/dbus/machine-id"].starts_with("symlink"));
}

#[test]
fn ubuntu_gpt_esp_netplan() {
    let variant = Variant {
        machine_id: MachineIdMode::Empty,
        keep_alice: false,
    };
    let o = run_fixture("ubuntu", &variant);
    assert_common("ubuntu", &o, &variant);
    assert!(
        !has(&o.after, "/var/lib/dbus/machine-id"),
        "regular-file dbus copy"
    );
    line_gone(&o, "/etc/netplan/50-cloud-init.yaml");
    line_gone(&o, "/etc/netplan/60-storage.yaml");
    line_gone(&o, "/etc/hosts");
}

#[test]
fn suse_btrfs() {
    let variant = Variant {
        machine_id: MachineIdMode::Remove,
        keep_alice: true,
    };
    let o = run_fixture("suse", &variant);
    assert_common("suse", &o, &variant);
    line_gone(&o, "/etc/sysconfig/network/ifcfg-eth0");
    assert!(!has(&o.after, "/var/lib/wicked/lease-eth0-dhcp-ipv4.xml"));
}

#[test]
fn centos7_xfs_lvm() {
    let variant = Variant {
        machine_id: MachineIdMode::Uninitialized,
        keep_alice: false,
    };
    let o = run_fixture("centos7", &variant);
    assert_common("centos7", &o, &variant);
    assert!(
        !has(&o.after, "/var/lib/dbus/machine-id"),
        "regular-file dbus copy"
    );
    line_gone(&o, "/etc/sysconfig/network-scripts/ifcfg-eth0");
    line_gone(&o, "/etc/sysconfig/network-scripts/ifcfg-eth1");
    line_gone(&o, "/etc/sysconfig/network");
    assert!(!has(&o.after, "/var/lib/NetworkManager/secret_key"));
    assert!(!has(&o.after, "/var/lib/yum/uuid"));
    assert!(has(&o.after, "/var/lib/rpm/Name.README"));
    // Off by default, on with `all`: firewall-rules and ca-certificates.
    assert!(!has(&o.after, "/etc/sysconfig/iptables"));
    assert!(!has(&o.after, "/etc/pki/tls/certs/localhost.crt"));
    assert_eq!(
        o.before.get("/etc/pki/tls/certs/ca-bundle.crt"),
        o.after.get("/etc/pki/tls/certs/ca-bundle.crt")
    );
}

#[test]
fn rocky9_xfs_lvm_keyfiles() {
    let variant = Variant {
        machine_id: MachineIdMode::Uninitialized,
        keep_alice: false,
    };
    let o = run_fixture("rocky9", &variant);
    assert_common("rocky9", &o, &variant);
    line_gone(&o, "/etc/sysconfig/network-scripts/ifcfg-eth9");
    // net-nmconn removes the keyfiles net-hwaddr would have edited (the edit is dropped
    // from the plan: the accounting above saw one removal each).
    for keyfile in ["eth0", "storage"] {
        let path = format!("/etc/NetworkManager/system-connections/{keyfile}.nmconnection");
        assert!(has(&o.before, &path) && !has(&o.after, &path), "{path}");
    }
    // lvm-uuids: LVM's devices file names the old PVID.
    assert!(has(&o.before, "/etc/lvm/devices/system.devices"));
    assert!(!has(&o.after, "/etc/lvm/devices/system.devices"));
    // Off by default, on with `all`: firewall-rules and kerberos-data.
    assert!(!has(&o.after, "/etc/firewalld/zones/public.xml"));
    assert!(!has(&o.after, "/var/kerberos/krb5kdc/principal"));
    for kept in [
        "/etc/firewalld/firewalld.conf",
        "/var/kerberos/krb5kdc/kadm5.acl",
        "/var/kerberos/krb5kdc/kdc.conf",
    ] {
        assert_eq!(o.before.get(kept), o.after.get(kept), "{kept}");
    }
}
