//! user-account: remove user accounts (UID_MIN..=UID_MAX from `/etc/login.defs`, never
//! root) with their home directories and mail spools, like virt-sysprep 1.48, selected
//! by `--remove-user-accounts` / `--keep-user-accounts`.
//!
//! Beyond virt-sysprep (which edits passwd, shadow and group only): the user's
//! `gshadow`, `subuid` and `subgid` lines go too and the name leaves other groups'
//! member lists, so no later account of that name inherits them. A home directory that
//! resolves to a system place ([`PROTECTED_TREES`], `/x`, `/var/x`) or that a remaining
//! account shares is never removed: a warning says so.
//! Owns: those rules. Must not: touch system accounts.

use std::collections::BTreeSet;

use super::super::edit::{edit_lines, LineAction};
use super::super::plan::Planner;
use super::super::Result;
use crate::guest::FileKind;

/// shadow-utils' defaults when login.defs does not say.
const DEFAULT_UID_MIN: u32 = 1000;
const DEFAULT_UID_MAX: u32 = 60000;

/// Which accounts `--remove-user-accounts` / `--keep-user-accounts` select.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserAccounts {
    /// Only these (all, when empty).
    pub remove: BTreeSet<String>,
    /// Never these (wins over `remove`).
    pub keep: BTreeSet<String>,
}

impl UserAccounts {
    fn selects(&self, name: &str) -> bool {
        !self.keep.contains(name) && (self.remove.is_empty() || self.remove.contains(name))
    }
}

/// One removable account from `/etc/passwd`.
struct Account {
    name: String,
    home: String,
}

/// Plans user-account.
pub fn user_account(planner: &mut Planner) -> Result<()> {
    let Some((passwd, meta)) = planner.stat("/etc/passwd")? else {
        return Ok(());
    };
    if meta.kind != FileKind::File {
        return Ok(());
    }
    let (uid_min, uid_max) = uid_range(planner)?;
    let selection = planner.options.user_accounts.clone();
    let content = planner.read(&passwd)?;
    let mut accounts = Vec::new();
    let mut kept_home_fields = Vec::new();
    let edit = edit_lines(&content, |line| {
        let fields: Vec<&str> = line.split(':').collect();
        let [name, _, uid, _, _, home, ..] = fields[..] else {
            return LineAction::Keep;
        };
        let Ok(uid) = uid.trim().parse::<u32>() else {
            kept_home_fields.push(home.to_owned());
            return LineAction::Keep;
        };
        if uid == 0 || name == "root" || uid < uid_min || uid > uid_max || !selection.selects(name)
        {
            return LineAction::Keep;
        }
        accounts.push(Account {
            name: name.to_owned(),
            home: home.to_owned(),
        });
        LineAction::Drop
    });
    let Some(edit) = edit else {
        return Ok(());
    };
    planner.edit(&passwd, edit);
    let names: BTreeSet<&str> = accounts.iter().map(|a| a.name.as_str()).collect();
    for file in ["/etc/shadow", "/etc/subuid", "/etc/subgid"] {
        edit_file(planner, file, |line| {
            let name = line.split(':').next().unwrap_or_default();
            if names.contains(name) {
                LineAction::Drop
            } else {
                LineAction::Keep
            }
        })?;
    }
    // group: name:password:GID:members; gshadow: name:password:admins:members.
    for (file, lists) in [("/etc/group", &[3][..]), ("/etc/gshadow", &[2, 3][..])] {
        edit_file(planner, file, |line| group_line(line, &names, lists))?;
    }
    let mut kept_homes = BTreeSet::new();
    for home in kept_home_fields.iter().filter(|h| h.starts_with('/')) {
        if let Some((path, _)) = planner.lookup(home)? {
            kept_homes.insert(path.to_string());
        }
    }
    for account in &accounts {
        remove_home(planner, account, &kept_homes)?;
        if let Some((path, meta)) = planner.lookup(&format!("/var/spool/mail/{}", account.name))? {
            planner.remove(&path, meta)?;
        }
    }
    Ok(())
}

/// A group line: the user's own group (same name) goes, the user leaves the
/// comma-separated name lists in fields `lists`.
fn group_line(line: &str, names: &BTreeSet<&str>, lists: &[usize]) -> LineAction {
    let mut fields: Vec<String> = line.split(':').map(str::to_owned).collect();
    if fields
        .first()
        .is_some_and(|group| names.contains(group.as_str()))
    {
        return LineAction::Drop;
    }
    let mut changed = false;
    for &index in lists {
        let Some(list) = fields.get_mut(index) else {
            return LineAction::Keep;
        };
        let kept: Vec<&str> = list
            .split(',')
            .filter(|m| !m.is_empty() && !names.contains(m.trim()))
            .collect();
        let joined = kept.join(",");
        if joined != *list {
            *list = joined;
            changed = true;
        }
    }
    if changed {
        LineAction::Replace(fields.join(":"))
    } else {
        LineAction::Keep
    }
}

/// Edits regular file `path` (symlinks followed) line by line, when present.
fn edit_file(planner: &mut Planner, path: &str, decide: impl Fn(&str) -> LineAction) -> Result<()> {
    let Some((path, meta)) = planner.stat(path)? else {
        return Ok(());
    };
    if meta.kind != FileKind::File {
        return Ok(());
    }
    let content = planner.read(&path)?;
    if let Some(edit) = edit_lines(&content, decide) {
        planner.edit(&path, edit);
    }
    Ok(())
}

/// System places a home directory field must never make us remove (a hostile or odd
/// passwd can say `/etc`, `/var/lib` or `/home/../usr`): anything within these, and
/// any directory less than two levels deep or directly below `/var`.
const PROTECTED_TREES: [&str; 11] = [
    "/bin", "/boot", "/dev", "/etc", "/lib", "/lib64", "/proc", "/run", "/sbin", "/sys", "/usr",
];

fn remove_home(
    planner: &mut Planner,
    account: &Account,
    kept_homes: &BTreeSet<String>,
) -> Result<()> {
    if account.home.is_empty() || !account.home.starts_with('/') {
        return Ok(());
    }
    let Some((path, meta)) = planner.lookup(&account.home)? else {
        return Ok(());
    };
    let resolved = path.as_str();
    let components: Vec<&str> = resolved.split('/').filter(|c| !c.is_empty()).collect();
    let protected = components.len() < 2
        || (components.len() == 2 && components[0] == "var")
        || PROTECTED_TREES
            .iter()
            .any(|tree| resolved == *tree || resolved.starts_with(&format!("{tree}/")));
    if protected {
        planner.warn(format!(
            "{}'s home directory {:?} ({resolved}) is a system place: not removed",
            account.name, account.home
        ));
        return Ok(());
    }
    if kept_homes.contains(resolved) {
        planner.warn(format!(
            "{}'s home directory {resolved} is also a remaining account's: not removed",
            account.name
        ));
        return Ok(());
    }
    planner.remove(&path, meta)
}

/// UID_MIN and UID_MAX from `/etc/login.defs`, shadow-utils' defaults when absent.
fn uid_range(planner: &mut Planner) -> Result<(u32, u32)> {
    let mut range = (DEFAULT_UID_MIN, DEFAULT_UID_MAX);
    let Some((path, meta)) = planner.stat("/etc/login.defs")? else {
        return Ok(range);
    };
    if meta.kind != FileKind::File {
        return Ok(range);
    }
    let content = planner.read(&path)?;
    for line in String::from_utf8_lossy(&content).lines() {
        let mut words = line.split_whitespace();
        let (Some(key), Some(value)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(value) = value.parse::<u32>() else {
            continue;
        };
        match key {
            "UID_MIN" => range.0 = value,
            "UID_MAX" => range.1 = value,
            _ => {}
        }
    }
    Ok(range)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_lines() {
        let names = BTreeSet::from(["alice"]);
        assert_eq!(group_line("alice:x:1000:", &names, &[3]), LineAction::Drop);
        assert_eq!(
            group_line("wheel:x:10:bob,alice,carol", &names, &[3]),
            LineAction::Replace("wheel:x:10:bob,carol".to_owned())
        );
        assert_eq!(
            group_line("wheel:x:10:alice", &names, &[3]),
            LineAction::Replace("wheel:x:10:".to_owned())
        );
        assert_eq!(group_line("wheel:x:10:bob", &names, &[3]), LineAction::Keep);
        assert_eq!(
            group_line("wheel:!:alice:alice,bob", &names, &[2, 3]),
            LineAction::Replace("wheel:!::bob".to_owned())
        );
        assert_eq!(group_line("broken", &names, &[3]), LineAction::Keep);
    }

    #[test]
    fn selection() {
        let all = UserAccounts::default();
        assert!(all.selects("alice"));
        let some = UserAccounts {
            remove: BTreeSet::from(["bob".to_owned()]),
            keep: BTreeSet::new(),
        };
        assert!(!some.selects("alice") && some.selects("bob"));
        let keep = UserAccounts {
            remove: BTreeSet::from(["bob".to_owned()]),
            keep: BTreeSet::from(["bob".to_owned()]),
        };
        assert!(!keep.selects("bob"));
    }
}
