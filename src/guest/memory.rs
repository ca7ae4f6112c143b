//! An in-memory [`GuestFs`] for unit tests of resolution and of sysprep operations:
//! a map from path to node, no appliance. Test-only; must not grow features the real
//! backends lack.

use std::collections::BTreeMap;

use super::{
    BlockId, BlockKind, FileKind, GuestError, GuestFs, Metadata, OsInfo, Resolved, Result,
    SkippedMount,
};

#[derive(Debug, Clone)]
pub enum Node {
    File(Vec<u8>),
    Dir,
    Symlink(String),
}

/// A guest held in memory. Paths are keys; `/` always exists.
#[derive(Debug, Clone)]
pub struct MemoryGuest {
    pub nodes: BTreeMap<String, Node>,
    pub os: OsInfo,
    /// Every mutating call, in order (`"remove /etc/x"`, ...), for assertions.
    pub log: Vec<String>,
    /// The disk's filesystems, PVs and VGs (one ext4 root by default).
    pub ids: Vec<BlockId>,
}

impl MemoryGuest {
    /// An empty guest of `distro`.
    pub fn new(distro: &str) -> Self {
        let mut nodes = BTreeMap::new();
        nodes.insert("/".to_owned(), Node::Dir);
        Self {
            nodes,
            os: OsInfo {
                root: "/dev/sda1".to_owned(),
                kind: "linux".to_owned(),
                distro: distro.to_owned(),
                family: super::Family::of_distro(distro),
                major_version: 1,
                minor_version: 0,
                product_name: distro.to_owned(),
                hostname: String::new(),
                mountpoints: vec![("/".to_owned(), "/dev/sda1".to_owned())],
            },
            log: Vec::new(),
            ids: vec![BlockId {
                kind: BlockKind::Filesystem {
                    fstype: "ext4".to_owned(),
                },
                device: "/dev/sda1".to_owned(),
                uuid: "0a1b2c3d-0000-4000-8000-000000000001".to_owned(),
            }],
        }
    }

    /// Adds a file (and its parent directories).
    pub fn file(mut self, path: &str, content: &str) -> Self {
        self.parents(path);
        self.nodes
            .insert(path.to_owned(), Node::File(content.as_bytes().to_vec()));
        self
    }

    /// Adds a directory (and its parents).
    pub fn dir(mut self, path: &str) -> Self {
        self.parents(path);
        self.nodes.insert(path.to_owned(), Node::Dir);
        self
    }

    /// Adds a symlink (and its parent directories).
    pub fn link(mut self, path: &str, target: &str) -> Self {
        self.parents(path);
        self.nodes
            .insert(path.to_owned(), Node::Symlink(target.to_owned()));
        self
    }

    /// The content of a file, for assertions.
    pub fn content(&self, path: &str) -> Option<String> {
        match self.nodes.get(path) {
            Some(Node::File(data)) => Some(String::from_utf8_lossy(data).into_owned()),
            _ => None,
        }
    }

    fn parents(&mut self, path: &str) {
        let mut prefix = String::new();
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            prefix.push('/');
            prefix.push_str(part);
            self.nodes.entry(prefix.clone()).or_insert(Node::Dir);
        }
    }

    fn node(&self, path: &Resolved) -> Result<&Node> {
        self.nodes.get(path.as_str()).ok_or_else(|| missing(path))
    }

    fn check_parent(&self, path: &Resolved) -> Result<()> {
        match path.parent().map(|p| self.nodes.get(p.as_str())) {
            Some(Some(Node::Dir)) | None => Ok(()),
            // A Resolved path whose parent is not a directory: the resolver broke its promise.
            _ => Err(GuestError::NotADirectory {
                path: path.to_string(),
            }),
        }
    }
}

fn missing(path: &Resolved) -> GuestError {
    GuestError::Backend {
        operation: "lookup",
        path: path.to_string(),
        message: "No such file or directory".to_owned(),
    }
}

impl GuestFs for MemoryGuest {
    fn inspect(&mut self) -> Result<Vec<OsInfo>> {
        Ok(vec![self.os.clone()])
    }
    fn mount_os(&mut self, _os: &OsInfo) -> Result<Vec<SkippedMount>> {
        Ok(Vec::new())
    }
    fn unmount_all(&mut self) -> Result<()> {
        Ok(())
    }
    fn lstat(&mut self, path: &Resolved) -> Result<Option<Metadata>> {
        self.check_parent(path)?;
        Ok(self.nodes.get(path.as_str()).map(|node| match node {
            Node::File(data) => Metadata {
                kind: FileKind::File,
                size: data.len() as u64,
                mode: 0o644,
            },
            Node::Dir => Metadata {
                kind: FileKind::Directory,
                size: 4096,
                mode: 0o755,
            },
            Node::Symlink(target) => Metadata {
                kind: FileKind::Symlink,
                size: target.len() as u64,
                mode: 0o777,
            },
        }))
    }
    fn read_link(&mut self, path: &Resolved) -> Result<String> {
        match self.node(path)? {
            Node::Symlink(target) => Ok(target.clone()),
            _ => Err(missing(path)),
        }
    }
    fn list_dir(&mut self, path: &Resolved) -> Result<Vec<String>> {
        self.check_parent(path)?;
        let prefix = if path.is_root() {
            "/".to_owned()
        } else {
            format!("{path}/")
        };
        Ok(self
            .nodes
            .keys()
            .filter_map(|key| key.strip_prefix(&prefix))
            .filter(|rest| !rest.is_empty() && !rest.contains('/'))
            .map(str::to_owned)
            .collect())
    }
    fn read_dir(&mut self, path: &Resolved) -> Result<Vec<(String, Metadata)>> {
        let mut found = Vec::new();
        for name in self.list_dir(path)? {
            if let Some(meta) = self.lstat(&path.child(&name))? {
                found.push((name, meta));
            }
        }
        Ok(found)
    }
    fn read(&mut self, path: &Resolved, _limit: u64) -> Result<Vec<u8>> {
        match self.node(path)? {
            Node::File(data) => Ok(data.clone()),
            _ => Err(missing(path)),
        }
    }
    fn write(&mut self, path: &Resolved, content: &[u8]) -> Result<()> {
        self.check_parent(path)?;
        self.log.push(format!("write {path}"));
        self.nodes
            .insert(path.to_string(), Node::File(content.to_vec()));
        Ok(())
    }
    fn truncate(&mut self, path: &Resolved) -> Result<()> {
        self.check_parent(path)?;
        self.log.push(format!("truncate {path}"));
        match self.nodes.get_mut(path.as_str()) {
            Some(Node::File(data)) => {
                data.clear();
                Ok(())
            }
            _ => Err(missing(path)),
        }
    }
    fn remove_file(&mut self, path: &Resolved) -> Result<()> {
        self.check_parent(path)?;
        self.log.push(format!("remove {path}"));
        match self.nodes.get(path.as_str()) {
            Some(Node::Dir) | None => Err(missing(path)),
            Some(_) => {
                self.nodes.remove(path.as_str());
                Ok(())
            }
        }
    }
    fn remove_tree(&mut self, path: &Resolved) -> Result<()> {
        self.check_parent(path)?;
        self.log.push(format!("remove-tree {path}"));
        let below = format!("{path}/");
        self.nodes
            .retain(|key, _| key != path.as_str() && !key.starts_with(&below));
        Ok(())
    }
    fn mkdir(&mut self, path: &Resolved) -> Result<()> {
        self.check_parent(path)?;
        self.log.push(format!("mkdir {path}"));
        self.nodes.insert(path.to_string(), Node::Dir);
        Ok(())
    }
    fn symlink(&mut self, target: &str, path: &Resolved) -> Result<()> {
        self.check_parent(path)?;
        self.log.push(format!("symlink {path}"));
        self.nodes
            .insert(path.to_string(), Node::Symlink(target.to_owned()));
        Ok(())
    }
    fn block_ids(&mut self) -> Result<Vec<BlockId>> {
        Ok(self.ids.clone())
    }
    fn set_fs_uuid(&mut self, device: &str, uuid: &str) -> Result<()> {
        self.log.push(format!("set-uuid {device} {uuid}"));
        for id in &mut self.ids {
            if id.device == device {
                id.uuid = uuid.to_owned();
            }
        }
        Ok(())
    }
    fn renew_lvm_uuids(&mut self) -> Result<()> {
        self.log.push("renew-lvm-uuids".to_owned());
        for id in &mut self.ids {
            if !matches!(id.kind, BlockKind::Filesystem { .. }) {
                id.uuid.push_str("-renewed");
            }
        }
        Ok(())
    }
}
