//! Which operations run: virt-sysprep's selection words.
//!
//! `--enable a,b` and `--operations a,b,-c,defaults,all` (both repeatable) build one
//! set, starting empty: every `--enable` word first, then the `--operations` words in
//! the order given; `-name`, `-defaults` and `-all` take away.
//! Without either flag the default-on operations run. Owns: that grammar. Must not:
//! decide anything about `--delete`/`--truncate`/`--hostname` (they always apply).

use std::collections::BTreeSet;

use super::operations::{find, Operation, OPERATIONS};
use super::{Result, SysprepError};

/// virt-sysprep operations imgferry deliberately does not offer, and why.
const NOT_IMPLEMENTED: [(&str, &str); 1] = [(
    "script",
    "imgferry never runs programs from or in the guest",
)];

/// One selection flag's words, in command-line order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Words {
    Enable(String),
    Operations(String),
}

/// The operations to run, in table order.
pub fn select(flags: &[Words]) -> Result<Vec<&'static Operation>> {
    if flags.is_empty() {
        return Ok(OPERATIONS.iter().filter(|op| op.default_on).collect());
    }
    let mut chosen: BTreeSet<&'static str> = BTreeSet::new();
    for flag in flags {
        let (text, allow_groups) = match flag {
            Words::Enable(text) => (text, false),
            Words::Operations(text) => (text, true),
        };
        for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            let (remove, name) = match word.strip_prefix('-') {
                Some(name) if allow_groups => (true, name),
                _ => (false, word),
            };
            let names = names_for(name, allow_groups)?;
            for name in names {
                if remove {
                    chosen.remove(name);
                } else {
                    chosen.insert(name);
                }
            }
        }
    }
    Ok(OPERATIONS
        .iter()
        .filter(|op| chosen.contains(op.name))
        .collect())
}

fn names_for(word: &str, allow_groups: bool) -> Result<Vec<&'static str>> {
    match word {
        "defaults" if allow_groups => Ok(OPERATIONS
            .iter()
            .filter(|op| op.default_on)
            .map(|op| op.name)
            .collect()),
        "all" if allow_groups => Ok(OPERATIONS.iter().map(|op| op.name).collect()),
        name => {
            if let Some(op) = find(name) {
                return Ok(vec![op.name]);
            }
            if let Some((_, reason)) = NOT_IMPLEMENTED.iter().find(|(n, _)| *n == name) {
                return Err(SysprepError::NotImplemented {
                    name: name.to_owned(),
                    reason,
                });
            }
            Err(SysprepError::UnknownOperation {
                name: name.to_owned(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(flags: &[Words]) -> Vec<&'static str> {
        select(flags).unwrap().iter().map(|op| op.name).collect()
    }

    #[test]
    fn defaults_without_flags() {
        let all = names(&[]);
        assert!(all.contains(&"machine-id"));
        assert!(!all.contains(&"firewall-rules"));
    }

    #[test]
    fn enable_is_exactly_the_list() {
        let flags = [Words::Enable("udev-persistent-net,net-hwaddr".to_owned())];
        assert_eq!(names(&flags), ["net-hwaddr", "udev-persistent-net"]);
    }

    #[test]
    fn operations_add_and_remove_in_order() {
        let flags = [
            Words::Operations("defaults,-ssh-hostkeys".to_owned()),
            Words::Operations("firewall-rules".to_owned()),
        ];
        let got = names(&flags);
        assert!(!got.contains(&"ssh-hostkeys"));
        assert!(got.contains(&"firewall-rules"));
        assert!(got.contains(&"machine-id"));
        let flags = [Words::Operations("all,-defaults".to_owned())];
        assert_eq!(
            names(&flags),
            [
                "ca-certificates",
                "firewall-rules",
                "flag-reconfiguration",
                "fs-uuids",
                "kerberos-data",
                "user-account"
            ]
        );
    }

    #[test]
    fn bad_words() {
        let err = select(&[Words::Enable("nope".to_owned())]).unwrap_err();
        assert!(matches!(err, SysprepError::UnknownOperation { .. }));
        let err = select(&[Words::Operations("defaults,script".to_owned())]).unwrap_err();
        assert!(matches!(err, SysprepError::NotImplemented { .. }));
        // Groups only exist for --operations, as in virt-sysprep.
        assert!(select(&[Words::Enable("defaults".to_owned())]).is_err());
    }
}
