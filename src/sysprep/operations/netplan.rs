//! netplan YAML: remove pinned MAC addresses and keep the file valid YAML that still
//! matches the interface it configured.
//!
//! `match: {macaddress: X}` becomes `match: {name: N}` where N is the interface's
//! `set-name` (the name it had on the old VM), else its id; when the match block
//! already has a `name`, the line just goes. A `macaddress:` anywhere else (setting a
//! bond's or an interface's MAC) is removed. Block style only: flow style and files
//! that do not parse before or after are refused. Owns: that text surgery. Must not:
//! reformat anything it does not change.

use super::super::edit::{edit_lines, LineAction, LineEdit};

/// One significant (non-blank, non-comment) line.
struct Line<'a> {
    index: usize,
    indent: usize,
    key: &'a str,
    value: &'a str,
}

fn significant(text: &str) -> Vec<Line<'_>> {
    text.lines()
        .enumerate()
        .filter_map(|(index, raw)| {
            let body = raw.trim_start();
            if body.is_empty() || body.starts_with('#') {
                return None;
            }
            let (key, value) = body.split_once(':').unwrap_or((body, ""));
            Some(Line {
                index,
                indent: raw.len() - body.len(),
                key: key.trim(),
                value: value.trim(),
            })
        })
        .collect()
}

/// The nearest line before position `at` with a smaller indent.
fn parent<'l, 'a>(lines: &'l [Line<'a>], at: usize) -> Option<(usize, &'l Line<'a>)> {
    let indent = lines.get(at)?.indent;
    lines[..at]
        .iter()
        .enumerate()
        .rev()
        .find(|(_, line)| line.indent < indent)
}

/// The direct children of the line at position `at`.
fn children<'l, 'a>(lines: &'l [Line<'a>], at: usize) -> impl Iterator<Item = &'l Line<'a>> {
    let indent = lines.get(at).map_or(0, |l| l.indent);
    let rest = lines.get(at + 1..).unwrap_or_default();
    let end = rest
        .iter()
        .position(|l| l.indent <= indent)
        .unwrap_or(rest.len());
    let child_indent = rest.first().map_or(0, |l| l.indent);
    rest[..end].iter().filter(move |l| l.indent == child_indent)
}

fn unquote(value: &str) -> &str {
    value.trim_matches(|c| c == '"' || c == '\'')
}

/// Removes or replaces every `macaddress:` in a netplan file; `Ok(None)` when there is
/// none, `Err(reason)` when the file cannot be edited safely.
pub fn strip_macs(content: &[u8]) -> Result<Option<LineEdit>, &'static str> {
    let text = std::str::from_utf8(content).map_err(|_| "not UTF-8")?;
    if !text.contains("macaddress") {
        return Ok(None);
    }
    if serde_saphyr::from_str::<serde_json::Value>(text).is_err() {
        return Err("it is not valid YAML");
    }
    let lines = significant(text);
    let mut actions = std::collections::BTreeMap::new();
    for (at, line) in lines.iter().enumerate() {
        if line.key != "macaddress" {
            if line.value.contains("macaddress") || line.key.contains("macaddress") {
                return Err("macaddress in flow style is not edited");
            }
            continue;
        }
        let action = match parent(&lines, at) {
            Some((match_at, block)) if block.key == "match" || block.key == "- match" => {
                if children(&lines, match_at).any(|l| l.key == "name") {
                    LineAction::Drop
                } else {
                    let Some((iface_at, iface)) = parent(&lines, match_at) else {
                        return Err("a match block outside an interface");
                    };
                    let name = children(&lines, iface_at)
                        .find(|l| l.key == "set-name")
                        .map_or(iface.key, |l| unquote(l.value));
                    LineAction::Replace(format!("{}name: {name}", " ".repeat(line.indent)))
                }
            }
            _ => LineAction::Drop,
        };
        actions.insert(line.index, action);
    }
    let mut index = 0;
    let edit = edit_lines(content, |_| {
        let action = actions.remove(&index).unwrap_or(LineAction::Keep);
        index += 1;
        action
    });
    if let Some(edit) = &edit {
        let edited = String::from_utf8_lossy(&edit.content);
        if serde_saphyr::from_str::<serde_json::Value>(&edited).is_err() {
            return Err("the edited file would not be valid YAML");
        }
    }
    Ok(edit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip(text: &str) -> String {
        let edit = strip_macs(text.as_bytes()).unwrap().unwrap();
        String::from_utf8(edit.content).unwrap()
    }

    #[test]
    fn match_by_mac_becomes_match_by_set_name() {
        let text = "network:\n    ethernets:\n        ens3:\n            dhcp4: true\n            match:\n                macaddress: fa:16:3e:4a:02:01\n            mtu: 1450\n            set-name: ens3\n    version: 2\n";
        assert_eq!(
            strip(text),
            "network:\n    ethernets:\n        ens3:\n            dhcp4: true\n            match:\n                name: ens3\n            mtu: 1450\n            set-name: ens3\n    version: 2\n"
        );
    }

    #[test]
    fn bond_mac_is_removed_and_quoted_match_replaced() {
        let text = "network:\n  ethernets:\n    storage0:\n      match:\n        macaddress: \"aa:bb\"\n      set-name: storage0\n  bonds:\n    bond0:\n      interfaces: [storage0]\n      macaddress: \"aa:bb\"\n      parameters:\n        mode: active-backup\n";
        assert_eq!(
            strip(text),
            "network:\n  ethernets:\n    storage0:\n      match:\n        name: storage0\n      set-name: storage0\n  bonds:\n    bond0:\n      interfaces: [storage0]\n      parameters:\n        mode: active-backup\n"
        );
    }

    #[test]
    fn existing_name_and_interface_id() {
        let text = "network:\n  ethernets:\n    eth0:\n      match:\n        name: eth*\n        macaddress: aa\n    lan:\n      match:\n        macaddress: bb\n";
        assert_eq!(
            strip(text),
            "network:\n  ethernets:\n    eth0:\n      match:\n        name: eth*\n    lan:\n      match:\n        name: lan\n"
        );
    }

    #[test]
    fn refused_and_untouched() {
        assert!(strip_macs(b"network: {ethernets: {e: {match: {macaddress: aa}}}}").is_err());
        assert!(strip_macs(b"network:\n  version: 2\n").unwrap().is_none());
        assert!(strip_macs(b"a: [\nmacaddress").is_err());
    }
}
