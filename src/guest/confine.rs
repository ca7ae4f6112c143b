//! Confined path resolution and the guest-neutral operations built on it
//! ([`GuestFsExt`]): every guest path is resolved inside the guest, component by
//! component, with `lstat` and `readlink` only.
//!
//! `..` at the root stays at the root and an absolute symlink target starts again at
//! the guest's root — the way the guest itself would see its files when booted — so no
//! path, pattern or symlink in a hostile image reaches outside it. Owns: resolution,
//! glob expansion, directory walks. Must not: call backend-specific code; every
//! backend inherits this module unchanged.

use std::collections::VecDeque;

use super::path::{is_valid_name, MAX_PATH_BYTES};
use super::{glob, FileKind, GuestError, GuestFs, Metadata, Resolved, Result};

/// Most symlinks followed while resolving one path (Linux's `MAXSYMLINKS`).
pub const MAX_SYMLINK_HOPS: usize = 40;

/// Most entries one [`GuestFsExt::walk`] or [`GuestFsExt::glob`] returns: each costs
/// a backend call, and a hostile image could hold millions.
pub const MAX_WALK_ENTRIES: usize = 200_000;

/// Whether a symlink in the final component is followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// Follow it, like open(2): the result names what the link points at.
    Final,
    /// Leave it, like lstat(2): the result names the link itself.
    ParentsOnly,
}

/// Splits an absolute guest path into its components (keeping `..`, dropping `.`).
fn components(path: &str) -> Result<VecDeque<String>> {
    if !path.starts_with('/') {
        return Err(invalid(path, "not absolute"));
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(invalid(path, "longer than 4096 bytes"));
    }
    if path.contains('\0') {
        return Err(invalid(path, "contains a NUL byte"));
    }
    Ok(split(path))
}

fn split(path: &str) -> VecDeque<String> {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(str::to_owned)
        .collect()
}

fn invalid(path: &str, reason: &'static str) -> GuestError {
    GuestError::InvalidPath {
        path: path.to_owned(),
        reason,
    }
}

/// Resolves `todo` starting from directory `start`.
fn resolve_from<G: GuestFs + ?Sized>(
    guest: &mut G,
    start: Resolved,
    mut todo: VecDeque<String>,
    follow: Follow,
    original: &str,
) -> Result<Resolved> {
    let mut current = start;
    let mut hops = 0;
    while let Some(component) = todo.pop_front() {
        if component == ".." {
            current = current.parent().unwrap_or_else(Resolved::root);
            continue;
        }
        if !is_valid_name(&component) {
            return Err(invalid(original, "has an invalid component"));
        }
        let candidate = current.child(&component);
        let last = todo.is_empty();
        if last && follow == Follow::ParentsOnly {
            return Ok(candidate);
        }
        match guest.lstat(&candidate)? {
            None if last => return Ok(candidate),
            None => {
                return Err(GuestError::NotFound {
                    path: candidate.to_string(),
                })
            }
            Some(Metadata {
                kind: FileKind::Symlink,
                ..
            }) => {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return Err(GuestError::SymlinkLoop {
                        path: original.to_owned(),
                        limit: MAX_SYMLINK_HOPS,
                    });
                }
                let target = guest.read_link(&candidate)?;
                if target.len() > MAX_PATH_BYTES || target.contains('\0') {
                    return Err(invalid(
                        original,
                        "a symlink on the way has an invalid target",
                    ));
                }
                if target.starts_with('/') {
                    current = Resolved::root();
                }
                for part in split(&target).into_iter().rev() {
                    todo.push_front(part);
                }
            }
            Some(Metadata {
                kind: FileKind::Directory,
                ..
            }) => current = candidate,
            Some(_) if last => return Ok(candidate),
            Some(_) => {
                return Err(GuestError::NotADirectory {
                    path: candidate.to_string(),
                })
            }
        }
    }
    Ok(current)
}

/// The operations every caller uses: each resolves its path inside the guest first.
/// Implemented once, here, for every [`GuestFs`].
pub trait GuestFsExt: GuestFs {
    /// Resolves the absolute guest path `path` inside the guest. A missing final
    /// component is fine (the result names where it would be); a missing or
    /// non-directory parent is an error.
    fn resolve(&mut self, path: &str, follow: Follow) -> Result<Resolved> {
        let todo = components(path)?;
        resolve_from(self, Resolved::root(), todo, follow, path)
    }

    /// Metadata of what `path` names, following symlinks; `None` when missing
    /// (including a dangling symlink or a missing parent directory).
    fn stat(&mut self, path: &str) -> Result<Option<(Resolved, Metadata)>> {
        let resolved = match self.resolve(path, Follow::Final) {
            Ok(resolved) => resolved,
            Err(GuestError::NotFound { .. } | GuestError::NotADirectory { .. }) => return Ok(None),
            Err(other) => return Err(other),
        };
        Ok(self.lstat(&resolved)?.map(|meta| (resolved, meta)))
    }

    /// The path `path` names without following a final symlink, with its metadata;
    /// `None` when it (or a parent directory) is missing.
    fn lookup(&mut self, path: &str) -> Result<Option<(Resolved, Metadata)>> {
        let resolved = match self.resolve(path, Follow::ParentsOnly) {
            Ok(resolved) => resolved,
            Err(GuestError::NotFound { .. } | GuestError::NotADirectory { .. }) => return Ok(None),
            Err(other) => return Err(other),
        };
        Ok(self.lstat(&resolved)?.map(|meta| (resolved, meta)))
    }

    /// The entries of directory `dir` with their metadata (symlinks not followed).
    fn entries(&mut self, dir: &Resolved) -> Result<Vec<(Resolved, Metadata)>> {
        Ok(self
            .read_dir(dir)?
            .into_iter()
            .filter(|(name, _)| is_valid_name(name))
            .map(|(name, meta)| (dir.child(&name), meta))
            .collect())
    }

    /// Everything below directory `dir` (not `dir` itself), parents before children,
    /// never following symlinks.
    fn walk(&mut self, dir: &Resolved) -> Result<Vec<(Resolved, Metadata)>> {
        let mut found = Vec::new();
        let mut pending = vec![dir.clone()];
        while let Some(next) = pending.pop() {
            let entries = self.entries(&next)?;
            for (path, meta) in entries.into_iter().rev() {
                if found.len() >= MAX_WALK_ENTRIES {
                    return Err(GuestError::TooManyEntries {
                        path: dir.to_string(),
                        limit: MAX_WALK_ENTRIES,
                    });
                }
                if meta.kind == FileKind::Directory {
                    pending.push(path.clone());
                }
                found.push((path, meta));
            }
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(found)
    }

    /// Expands the absolute shell pattern `pattern` (`*`, `?`, `[..]` per component;
    /// a leading `.` only matched literally). Directories on the way are resolved inside
    /// the guest (symlinks followed); the matches themselves are not followed. Sorted,
    /// without duplicates; missing directories just match nothing.
    fn glob(&mut self, pattern: &str) -> Result<Vec<(Resolved, Metadata)>> {
        let mut todo = components(pattern)?;
        let mut bases = vec![Resolved::root()];
        while let Some(component) = todo.pop_front() {
            let last = todo.is_empty();
            let mut next = Vec::new();
            for base in &bases {
                let names = if glob::has_magic(&component) {
                    let names = self.list_dir(base)?;
                    names
                        .into_iter()
                        .filter(|name| is_valid_name(name) && glob::matches(&component, name))
                        .collect()
                } else {
                    vec![component.clone()]
                };
                for name in names {
                    let follow = if last {
                        Follow::ParentsOnly
                    } else {
                        Follow::Final
                    };
                    let single = VecDeque::from([name]);
                    match resolve_from(self, base.clone(), single, follow, pattern) {
                        Ok(path) if last => next.push(path),
                        // A directory on the way: it must exist and be one.
                        Ok(path) => {
                            if let Some(Metadata {
                                kind: FileKind::Directory,
                                ..
                            }) = self.lstat(&path)?
                            {
                                next.push(path);
                            }
                        }
                        Err(GuestError::NotFound { .. } | GuestError::NotADirectory { .. }) => {}
                        Err(other) => return Err(other),
                    }
                }
                if next.len() > MAX_WALK_ENTRIES {
                    return Err(GuestError::TooManyEntries {
                        path: pattern.to_owned(),
                        limit: MAX_WALK_ENTRIES,
                    });
                }
            }
            next.sort();
            next.dedup();
            bases = next;
        }
        let mut found = Vec::new();
        for path in bases {
            if path.is_root() {
                continue;
            }
            if let Some(meta) = self.lstat(&path)? {
                found.push((path, meta));
            }
        }
        Ok(found)
    }

    /// The content of the regular file `path` (symlinks followed), at most `limit`
    /// bytes; `None` when it does not exist.
    fn read_file(&mut self, path: &str, limit: u64) -> Result<Option<(Resolved, Vec<u8>)>> {
        match self.stat(path)? {
            None => Ok(None),
            Some((resolved, meta)) if meta.kind == FileKind::File => {
                if meta.size > limit {
                    return Err(GuestError::TooLarge {
                        path: resolved.to_string(),
                        size: meta.size,
                        limit,
                    });
                }
                let content = self.read(&resolved, limit)?;
                Ok(Some((resolved, content)))
            }
            Some((resolved, meta)) => Err(GuestError::NotARegularFile {
                path: resolved.to_string(),
                kind: meta.kind.name(),
            }),
        }
    }
}

impl<T: GuestFs + ?Sized> GuestFsExt for T {}

#[cfg(test)]
#[path = "confine_tests.rs"]
mod tests;
