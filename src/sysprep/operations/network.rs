//! net-hwaddr and net-hostname: MAC addresses and hostnames pinned in network
//! configuration, for every format in use (ifcfg for the RHEL family and SUSE,
//! NetworkManager keyfiles, systemd-networkd, Debian interfaces, netplan).
//!
//! Owns: the line rules per format. Must not: leave a file that matches more than it
//! did (a networkd `[Match]` emptied would match every interface: such a file is left
//! alone with a warning).

use super::super::edit::{assigns, edit_lines, LineAction, LineEdit};
use super::super::plan::Planner;
use super::super::Result;
use super::netplan;
use crate::guest::FileKind;

pub const IFCFG: [&str; 2] = [
    "/etc/sysconfig/network-scripts/ifcfg-*",
    "/etc/sysconfig/network/ifcfg-*",
];
pub const NM_KEYFILES: &str = "/etc/NetworkManager/system-connections/*";
pub const NETWORKD: [&str; 2] = [
    "/etc/systemd/network/*.network",
    "/etc/systemd/network/*.link",
];
pub const NETPLAN: &str = "/etc/netplan/*.yaml";
pub const INTERFACES: [&str; 2] = ["/etc/network/interfaces", "/etc/network/interfaces.d/*"];

/// What a format's editor says about one file.
enum Verdict {
    Unchanged,
    Edit(LineEdit),
    /// Left alone, with the reason (becomes a warning).
    Refused(String),
}

/// Runs `editor` on every regular file (symlinks followed) that `glob` matches.
fn edit_each(planner: &mut Planner, glob: &str, editor: impl Fn(&[u8]) -> Verdict) -> Result<()> {
    for (matched, _) in planner.glob(glob)? {
        let Some((path, meta)) = planner.stat(matched.as_str())? else {
            continue;
        };
        if meta.kind != FileKind::File {
            continue;
        }
        let content = planner.read(&path)?;
        match editor(&content) {
            Verdict::Unchanged => {}
            Verdict::Edit(edit) => planner.edit(&path, edit),
            Verdict::Refused(reason) => planner.warn(format!("{path} left unchanged: {reason}")),
        }
    }
    Ok(())
}

fn verdict(edit: Option<LineEdit>) -> Verdict {
    edit.map_or(Verdict::Unchanged, Verdict::Edit)
}

/// Removes pinned MAC addresses.
pub fn net_hwaddr(planner: &mut Planner) -> Result<()> {
    for glob in IFCFG {
        edit_each(planner, glob, |content| {
            verdict(edit_lines(content, |line| {
                drop_if(assigns(line, "HWADDR").is_some())
            }))
        })?;
    }
    edit_each(planner, NM_KEYFILES, nm_keyfile)?;
    for glob in NETWORKD {
        edit_each(planner, glob, networkd)?;
    }
    edit_each(planner, NETPLAN, |content| {
        match netplan::strip_macs(content) {
            Ok(edit) => verdict(edit),
            Err(reason) => Verdict::Refused(reason.to_owned()),
        }
    })?;
    for glob in INTERFACES {
        edit_each(planner, glob, |content| {
            verdict(edit_lines(content, |line| {
                drop_if(line.split_whitespace().next() == Some("hwaddress"))
            }))
        })?;
    }
    Ok(())
}

/// Removes `HOSTNAME=` and `DHCP_HOSTNAME=` from ifcfg files.
pub fn net_hostname(planner: &mut Planner) -> Result<()> {
    for glob in IFCFG {
        edit_each(planner, glob, |content| {
            verdict(edit_lines(content, |line| {
                drop_if(
                    assigns(line, "HOSTNAME").is_some() || assigns(line, "DHCP_HOSTNAME").is_some(),
                )
            }))
        })?;
    }
    Ok(())
}

fn drop_if(condition: bool) -> LineAction {
    if condition {
        LineAction::Drop
    } else {
        LineAction::Keep
    }
}

/// `mac-address=` lines of a keyfile (any section). A profile with no
/// `interface-name=` then applies to any device of its type: still edited (as an
/// ifcfg file without HWADDR), since the MAC of the old VM can never match again.
fn nm_keyfile(content: &[u8]) -> Verdict {
    verdict(edit_lines(content, |line| {
        drop_if(assigns(line, "mac-address").is_some())
    }))
}

/// `MACAddress=` / `PermanentMACAddress=` in `[Match]` sections, only when another
/// match key remains there.
fn networkd(content: &[u8]) -> Verdict {
    let text = String::from_utf8_lossy(content);
    let mut section = String::new();
    let mut mac_lines = 0;
    let mut other_keys = 0;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            section = line.to_owned();
        } else if section == "[Match]" && !line.is_empty() && !line.starts_with(['#', ';']) {
            if is_networkd_mac(line) {
                mac_lines += 1;
            } else {
                other_keys += 1;
            }
        }
    }
    if mac_lines == 0 {
        return Verdict::Unchanged;
    }
    if other_keys == 0 {
        return Verdict::Refused(
            "its [Match] section has only MACAddress=, and an empty [Match] matches every interface"
                .to_owned(),
        );
    }
    let mut section = String::new();
    verdict(edit_lines(content, |line| {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            section = trimmed.to_owned();
        }
        drop_if(section == "[Match]" && is_networkd_mac(trimmed))
    }))
}

fn is_networkd_mac(line: &str) -> bool {
    assigns(line, "MACAddress").is_some() || assigns(line, "PermanentMACAddress").is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edited(v: Verdict) -> String {
        match v {
            Verdict::Edit(edit) => String::from_utf8(edit.content).unwrap(),
            Verdict::Unchanged => "<unchanged>".to_owned(),
            Verdict::Refused(reason) => format!("<refused: {reason}>"),
        }
    }

    #[test]
    fn networkd_keeps_a_match() {
        let with_name =
            b"[Match]\nMACAddress=52:54:00:4a:01:02\nName=eth1\n\n[Network]\nMACAddress=x\n";
        assert_eq!(
            edited(networkd(with_name)),
            "[Match]\nName=eth1\n\n[Network]\nMACAddress=x\n"
        );
        assert!(
            edited(networkd(b"[Match]\nMACAddress=aa\n[Link]\nName=x\n")).starts_with("<refused")
        );
        assert_eq!(edited(networkd(b"[Match]\nName=eth2\n")), "<unchanged>");
    }
}
