//! Every fixture, every operation (`--operations all`, a different `--machine-id` mode
//! on some), in ONE appliance launch each: sysprep runs
//! through the library on a copy, the full listing (path, kind, mode, sha256) before
//! and after must differ in exactly the paths the run reported — nothing else changed
//! — the fixture's seeded artefacts must be gone and its controls kept, the
//! filesystems must check clean in the appliance, and the committed image must pass
//! `qemu-img check`.

mod common;
mod sysprep_support;

use std::collections::BTreeSet;

use imgferry::guest::libguestfs::{Access, Session};
use imgferry::guest::GuestFs;
use imgferry::report::SilentReporter;
use imgferry::sysprep::{self, Action, Hostname, MachineIdMode, Options, Words};
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

/// Controls every fixture has, which must survive untouched.
const KEPT_EVERYWHERE: [&str; 12] = [
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
    "/home/alice/.bashrc",
];

struct Outcome {
    before: Listing,
    after: Listing,
    reported: Vec<sysprep::Change>,
}

fn run_fixture(name: &'static str, machine_id: MachineIdMode) -> Outcome {
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
    lap("listed");
    session.unmount_all().expect("unmount");

    let options = Options {
        operations: sysprep::select(&[Words::Operations("all".to_owned())]).expect("all"),
        machine_id,
        delete: vec![CERN_STATE.to_owned()],
        hostname: Some(Hostname::parse(NEW_HOSTNAME).unwrap()),
        ..Options::default()
    };
    let reports = sysprep::run(&mut session, &options, &SilentReporter).expect("sysprep");
    assert_eq!(reports.len(), 1);
    let reported = reports[0].changes.clone();
    lap("sysprep done");

    session.mount_os(&os).expect("mount again");
    let after = listing(&mut session);
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

fn assert_common(name: &str, o: &Outcome, machine_id: MachineIdMode) {
    assert_exact_accounting(name, o);
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
    match machine_id {
        MachineIdMode::Uninitialized => content_is(o, "/etc/machine-id", "uninitialized\n"),
        MachineIdMode::Empty => content_is(o, "/etc/machine-id", ""),
        MachineIdMode::Remove => assert!(!has(&o.after, "/etc/machine-id"), "{name}"),
    }
    content_is(o, "/etc/hostname", &format!("{NEW_HOSTNAME}\n"));
    assert!(has(&o.after, "/tmp") && !o.after.keys().any(|k| k.starts_with("/tmp/")));
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
    let o = run_fixture("debian", MachineIdMode::Uninitialized);
    assert_common("debian", &o, MachineIdMode::Uninitialized);
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
    let o = run_fixture("ubuntu", MachineIdMode::Empty);
    assert_common("ubuntu", &o, MachineIdMode::Empty);
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
    let o = run_fixture("suse", MachineIdMode::Remove);
    assert_common("suse", &o, MachineIdMode::Remove);
    line_gone(&o, "/etc/sysconfig/network/ifcfg-eth0");
    assert!(!has(&o.after, "/var/lib/wicked/lease-eth0-dhcp-ipv4.xml"));
}

#[test]
fn centos7_xfs_lvm() {
    let o = run_fixture("centos7", MachineIdMode::Uninitialized);
    assert_common("centos7", &o, MachineIdMode::Uninitialized);
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
    let o = run_fixture("rocky9", MachineIdMode::Uninitialized);
    assert_common("rocky9", &o, MachineIdMode::Uninitialized);
    line_gone(&o, "/etc/sysconfig/network-scripts/ifcfg-eth9");
    line_gone(
        &o,
        "/etc/NetworkManager/system-connections/eth0.nmconnection",
    );
    line_gone(
        &o,
        "/etc/NetworkManager/system-connections/storage.nmconnection",
    );
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
