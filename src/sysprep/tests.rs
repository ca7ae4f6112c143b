//! Unit tests of the operations against the in-memory guest: what each plans, that a
//! dry run changes nothing, and that the always-applied options ignore the selection.

use super::*;
use crate::guest::memory::MemoryGuest;
use crate::report::SilentReporter;

fn centos() -> MemoryGuest {
    MemoryGuest::new("centos")
        .file("/etc/machine-id", "ac5d753144203904e8d0f6e439b6a6f4\n")
        .file("/var/lib/dbus/machine-id", "ac5d753144203904e8d0f6e439b6a6f4\n")
        .file("/etc/ssh/ssh_host_rsa_key", "k")
        .file("/etc/ssh/ssh_host_rsa_key.pub", "k")
        .file("/etc/ssh/backup_host_keys/README", "r")
        .file("/etc/ssh/sshd_config", "c")
        .file("/etc/krb5.keytab", "kt")
        .file(
            "/etc/sysconfig/network-scripts/ifcfg-eth0",
            "DEVICE=\"eth0\"\nHWADDR=\"FA:16:3E:4A:03:01\"\nHOSTNAME=\"h.example.org\"\nDHCP_HOSTNAME=\"h\"\n",
        )
        .file("/etc/sysconfig/network", "NETWORKING=yes\nHOSTNAME=h.example.org\n")
        .file("/etc/hostname", "h\n")
        .file("/etc/udev/rules.d/70-persistent-net.rules", "r")
        .file("/etc/udev/rules.d/99-local.rules", "keep")
        .file("/var/lib/cern-private-cloud-addons/state", "s")
        .file("/var/lib/cloud/seed/nocloud-net/meta-data", "m")
        .file("/var/lib/cloud/instances/x/obj.pkl", "p")
        .link("/var/lib/cloud/instance", "/var/lib/cloud/instances/x")
        .file("/tmp/.hidden", "h")
        .file("/tmp/dir/nested", "n")
        .file("/var/spool/at/.SEQ", "00042\n")
        .file("/var/spool/at/a0001", "job")
}

fn options(words: &[Words]) -> Options {
    Options {
        operations: select(words).unwrap(),
        ..Options::default()
    }
}

fn run_on(guest: &mut MemoryGuest, options: &Options) -> Vec<String> {
    let reports = run(guest, options, &SilentReporter).unwrap();
    reports[0]
        .changes
        .iter()
        .map(|c| format!("{} {} {}", c.operation, c.action.name(), c.path))
        .collect()
}

#[test]
fn cern_procedure_deletes_whatever_the_selection() {
    let mut guest = centos();
    let mut opts = options(&[Words::Enable("udev-persistent-net,net-hwaddr".to_owned())]);
    opts.delete = vec![
        "/etc/krb5.keytab".to_owned(),
        "/var/lib/cern-private-cloud-addons/state".to_owned(),
    ];
    let changes = run_on(&mut guest, &opts);
    assert_eq!(
        changes,
        [
            "net-hwaddr edit /etc/sysconfig/network-scripts/ifcfg-eth0",
            "udev-persistent-net remove /etc/udev/rules.d/70-persistent-net.rules",
            "delete remove /etc/krb5.keytab",
            "delete remove /var/lib/cern-private-cloud-addons/state",
        ]
    );
    assert!(!guest.nodes.contains_key("/etc/krb5.keytab"));
    assert!(guest.nodes.contains_key("/etc/udev/rules.d/99-local.rules"));
    assert_eq!(
        guest
            .content("/etc/sysconfig/network-scripts/ifcfg-eth0")
            .unwrap(),
        "DEVICE=\"eth0\"\nHOSTNAME=\"h.example.org\"\nDHCP_HOSTNAME=\"h\"\n"
    );
    // The machine-id was not selected: untouched.
    assert!(guest
        .content("/etc/machine-id")
        .unwrap()
        .starts_with("ac5d"));
}

#[test]
fn identity_defaults() {
    let mut guest = centos();
    let changes = run_on(&mut guest, &options(&[]));
    assert!(changes.contains(&"machine-id edit /etc/machine-id".to_owned()));
    assert_eq!(guest.content("/etc/machine-id").unwrap(), "uninitialized\n");
    assert!(!guest.nodes.contains_key("/var/lib/dbus/machine-id"));
    assert!(!guest.nodes.contains_key("/etc/ssh/ssh_host_rsa_key"));
    assert!(guest.nodes.contains_key("/etc/ssh/backup_host_keys/README"));
    assert!(guest.nodes.contains_key("/etc/ssh/sshd_config"));
    assert_eq!(
        guest
            .content("/etc/sysconfig/network-scripts/ifcfg-eth0")
            .unwrap(),
        "DEVICE=\"eth0\"\n"
    );
    // cloud-init: all but seed; the instance symlink goes as a link.
    assert!(guest
        .nodes
        .contains_key("/var/lib/cloud/seed/nocloud-net/meta-data"));
    assert!(!guest.nodes.contains_key("/var/lib/cloud/instance"));
    assert!(!guest.nodes.contains_key("/var/lib/cloud/instances"));
    // tmp-files: dot files and nested directories, but /tmp stays.
    assert!(guest.nodes.contains_key("/tmp"));
    assert!(!guest.nodes.keys().any(|k| k.starts_with("/tmp/")));
    // cron-spool: jobs go, the counter is reset.
    assert!(!guest.nodes.contains_key("/var/spool/at/a0001"));
    assert_eq!(guest.content("/var/spool/at/.SEQ").unwrap(), "00000\n");
}

#[test]
fn machine_id_modes() {
    for (mode, expect) in [
        (MachineIdMode::Empty, Some("")),
        (MachineIdMode::Remove, None),
    ] {
        let mut guest = centos();
        let mut opts = options(&[Words::Enable("machine-id".to_owned())]);
        opts.machine_id = mode;
        run_on(&mut guest, &opts);
        assert_eq!(guest.content("/etc/machine-id").as_deref(), expect);
    }
}

#[test]
fn dry_run_plans_the_same_and_changes_nothing() {
    let mut real = centos();
    let real_changes = run_on(&mut real, &options(&[]));
    let mut dry = centos();
    let mut opts = options(&[]);
    opts.dry_run = true;
    let dry_changes = run_on(&mut dry, &opts);
    assert_eq!(dry_changes, real_changes);
    assert!(dry.log.is_empty(), "{:?}", dry.log);
}

#[test]
fn two_operations_edit_one_file() {
    let mut guest = centos();
    let mut opts = options(&[Words::Enable("net-hwaddr,net-hostname".to_owned())]);
    opts.dry_run = true;
    let reports = run(&mut guest, &opts, &SilentReporter).unwrap();
    let edits: Vec<&Change> = reports[0].changes.iter().collect();
    assert_eq!(edits.len(), 2);
    assert_eq!(edits[0].removed_lines, ["HWADDR=\"FA:16:3E:4A:03:01\""]);
    assert_eq!(
        edits[1].removed_lines,
        ["HOSTNAME=\"h.example.org\"", "DHCP_HOSTNAME=\"h\""]
    );
}

#[test]
fn hostname_and_truncate() {
    let mut guest = centos();
    let mut opts = options(&[Words::Enable("customize".to_owned())]);
    opts.hostname = Some(Hostname::parse("web-02").unwrap());
    opts.truncate = vec!["/var/spool/at/.SEQ".to_owned()];
    run_on(&mut guest, &opts);
    assert_eq!(guest.content("/etc/hostname").unwrap(), "web-02\n");
    assert_eq!(
        guest.content("/etc/sysconfig/network").unwrap(),
        "NETWORKING=yes\nHOSTNAME=web-02\n"
    );
    assert_eq!(guest.content("/var/spool/at/.SEQ").unwrap(), "");
}

#[test]
fn write_creates_or_replaces_after_the_operations_without_reporting_content() {
    let mut guest = centos();
    let mut opts = options(&[Words::Enable("kerberos-hostkeytab".to_owned())]);
    opts.write = vec![
        custom::parse_write("/etc/motd:secret: token\n").unwrap(),
        custom::parse_write("/etc/krb5.keytab:new").unwrap(),
        custom::parse_write("/etc/hostname:").unwrap(),
    ];
    let reports = run(&mut guest, &opts, &SilentReporter).unwrap();
    let changes: Vec<String> = reports[0]
        .changes
        .iter()
        .map(|c| format!("{} {} {}", c.operation, c.action.name(), c.path))
        .collect();
    assert_eq!(
        changes,
        [
            "kerberos-hostkeytab remove /etc/krb5.keytab",
            "write create /etc/motd",
            "write create /etc/krb5.keytab",
            "write edit /etc/hostname",
        ]
    );
    assert!(reports[0]
        .changes
        .iter()
        .all(|c| c.added_lines.is_empty() && c.removed_lines.is_empty()));
    assert_eq!(guest.content("/etc/motd").unwrap(), "secret: token\n");
    assert_eq!(guest.content("/etc/krb5.keytab").unwrap(), "new");
    assert_eq!(guest.content("/etc/hostname").unwrap(), "");

    for bad in ["etc/motd:x", "no-colon", ":x", "/:x"] {
        let err = custom::parse_write(bad).unwrap_err();
        assert_eq!(err.exit_code(), crate::exit::ExitCode::Usage, "{bad}");
        assert!(!err.to_string().contains(":x"), "{err}");
    }
    let mut opts = options(&[]);
    opts.write = vec![custom::parse_write("/etc/ssh:x").unwrap()];
    let err = run(&mut guest, &opts, &SilentReporter).unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
}

#[test]
fn truncating_a_directory_fails_before_any_change() {
    let mut guest = centos();
    let mut opts = options(&[]);
    opts.truncate = vec!["/etc/ssh".to_owned()];
    let err = run(&mut guest, &opts, &SilentReporter).unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
    assert!(guest.log.is_empty(), "{:?}", guest.log);
}

#[test]
fn every_operation_has_a_unique_name_and_a_description() {
    let mut names: Vec<&str> = OPERATIONS.iter().map(|op| op.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), OPERATIONS.len());
    assert!(OPERATIONS.iter().all(|op| !op.description.is_empty()));
}

#[test]
fn fs_and_lvm_uuids_rewrite_references_and_drop_the_devices_file() {
    let old = "0a1b2c3d-0000-4000-8000-000000000001";
    let mut guest = centos()
        .file(
            "/etc/fstab",
            &format!("UUID={old} / xfs defaults 0 0\n/dev/rhel/swap none swap defaults 0 0\n"),
        )
        .file(
            "/boot/grub2/grub.cfg",
            &format!(
                "search --fs-uuid --set=root {}\nlinux /vmlinuz root=/dev/rhel/root\n",
                old.to_uppercase()
            ),
        )
        .file(
            "/etc/lvm/devices/system.devices",
            "VERSION=1.1.1\nIDTYPE=devname IDNAME=/dev/sda2 DEVNAME=/dev/sda2 PVID=abc\n",
        )
        .file("/boot/initramfs-5.14.img", "x");
    guest.ids.push(crate::guest::BlockId {
        kind: crate::guest::BlockKind::PhysicalVolume,
        device: "/dev/sda2".to_owned(),
        uuid: "pv-old".to_owned(),
    });
    let opts = options(&[Words::Enable("fs-uuids,lvm-uuids".to_owned())]);
    let mut dry = guest.clone();
    let dry_changes = run_on(
        &mut dry,
        &Options {
            dry_run: true,
            ..opts.clone()
        },
    );
    assert!(dry.log.is_empty(), "{:?}", dry.log);
    let changes = run_on(&mut guest, &opts);
    assert_eq!(changes, dry_changes);
    assert_eq!(
        changes,
        [
            "fs-uuids edit /etc/fstab",
            "fs-uuids edit /boot/grub2/grub.cfg",
            "lvm-uuids remove /etc/lvm/devices/system.devices",
            "fs-uuids new-uuid /dev/sda1",
            "lvm-uuids new-uuid /dev/sda2",
        ]
    );
    let new = guest.ids[0].uuid.clone();
    assert_ne!(new, old);
    assert_eq!(
        guest.content("/etc/fstab").unwrap(),
        format!("UUID={new} / xfs defaults 0 0\n/dev/rhel/swap none swap defaults 0 0\n")
    );
    assert!(guest
        .content("/boot/grub2/grub.cfg")
        .unwrap()
        .contains(&new));
    assert_eq!(guest.ids[1].uuid, "pv-old-renewed");
}

#[test]
fn user_account_removes_alice_everywhere_but_keeps_root_and_system_users() {
    let guest = || {
        centos()
            .file("/etc/login.defs", "UID_MIN 1000\nUID_MAX 60000\n")
            .file("/etc/passwd", "root:x:0:0::/root:/bin/bash\nbin:x:2:2::/bin:/sbin/nologin\nalice:x:1000:1000::/home/alice:/bin/bash\nodd:x:1001:1001::/srv:/bin/sh\nsneaky:x:1002:1002::/home/../var/lib:/bin/sh\nsvc:x:1003:1003::/etc/svc:/bin/sh\n")
            .file("/etc/shadow", "root:!::\nalice:$6$x::\nodd:!::\n")
            .file("/etc/group", "root:x:0:\nwheel:x:10:alice,bob\nalice:x:1000:\nodd:x:1001:\n")
            .file("/etc/gshadow", "wheel:::alice\nalice:!::\n")
            .file("/home/alice/.bashrc", "b")
            .file("/srv/www/index.html", "keep")
            .file("/var/lib/dpkg/status", "keep")
            .file("/etc/svc/conf", "keep")
            .file("/var/spool/mail/alice", "m")
    };
    let mut opts = options(&[Words::Enable("user-account".to_owned())]);
    let mut g = guest();
    run_on(&mut g, &opts);
    assert_eq!(
        g.content("/etc/passwd").unwrap(),
        "root:x:0:0::/root:/bin/bash\nbin:x:2:2::/bin:/sbin/nologin\n"
    );
    assert_eq!(g.content("/etc/shadow").unwrap(), "root:!::\n");
    assert_eq!(
        g.content("/etc/group").unwrap(),
        "root:x:0:\nwheel:x:10:bob\n"
    );
    assert_eq!(g.content("/etc/gshadow").unwrap(), "wheel:::\n");
    assert!(!g.nodes.contains_key("/home/alice") && !g.nodes.contains_key("/var/spool/mail/alice"));
    assert!(
        g.nodes.contains_key("/srv/www/index.html"),
        "a top-level home is never removed"
    );
    assert!(
        g.nodes.contains_key("/var/lib/dpkg/status"),
        "a home that resolves to /var/lib (via ..) is never removed"
    );
    assert!(
        g.nodes.contains_key("/etc/svc/conf"),
        "a home inside /etc is never removed"
    );
    opts.user_accounts.keep.insert("alice".to_owned());
    let mut g = guest();
    run_on(&mut g, &opts);
    assert!(g.content("/etc/passwd").unwrap().contains("alice:"));
    assert!(!g.content("/etc/passwd").unwrap().contains("odd:"));
}

#[test]
fn net_nmconn_is_rhel_family_only_and_flag_reconfiguration_creates_the_flag() {
    let keyfile = "/etc/NetworkManager/system-connections/eth0.nmconnection";
    let opts = options(&[Words::Enable(
        "net-nmconn,flag-reconfiguration,net-hwaddr".to_owned(),
    )]);
    let mut rocky =
        MemoryGuest::new("rocky").file(keyfile, "[ethernet]\nmac-address=FA:16:3E:00:00:01\n");
    assert_eq!(
        run_on(&mut rocky, &opts),
        [
            "flag-reconfiguration create /.unconfigured".to_owned(),
            format!("net-nmconn remove {keyfile}"),
        ]
    );
    assert_eq!(rocky.content("/.unconfigured").unwrap(), "");
    let mut ubuntu =
        MemoryGuest::new("ubuntu").file(keyfile, "[ethernet]\nmac-address=FA:16:3E:00:00:01\n");
    assert_eq!(
        run_on(&mut ubuntu, &opts),
        [
            format!("net-hwaddr edit {keyfile}"),
            "flag-reconfiguration create /.unconfigured".to_owned(),
        ]
    );
}
