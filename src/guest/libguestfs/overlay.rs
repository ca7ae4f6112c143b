//! The write overlay: a qcow2 file whose backing file is the image, created beside it
//! with `qemu-img create -b IMAGE -F FORMAT`, merged with `qemu-img commit` only when
//! the caller says so, deleted in every case.
//!
//! Owns: the overlay file's life and the two `qemu-img` calls. Must not: decide when
//! to commit (that is [`super::Session::commit`]'s caller).

use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::NamedTempFile;

use crate::disk::detect::{detect, Format};
use crate::disk::LocalFile;
use crate::guest::{GuestError, Result};

/// A qcow2 overlay on top of an image. Removed when dropped.
pub struct Overlay {
    file: NamedTempFile,
    image: PathBuf,
}

/// The image's format name for qemu (`raw` or `qcow2`), judged by content.
pub fn image_format(image: &Path) -> Result<&'static str> {
    let source = LocalFile::open(image).map_err(|e| GuestError::io("open", image, e))?;
    match detect(&source).map_err(|e| GuestError::io("read", image, e))? {
        Format::Raw => Ok("raw"),
        Format::Qcow2 => Ok("qcow2"),
        Format::Unsupported(other) => Err(GuestError::Overlay {
            action: "use",
            path: image.to_path_buf(),
            message: format!(
                "{} images are not supported (raw and qcow2 are)",
                other.name()
            ),
        }),
    }
}

impl Overlay {
    /// Creates the overlay in the image's directory (mode 0600, hidden name).
    pub fn create(image: &Path, format: &str) -> Result<Self> {
        // Fail now, not after the appliance ran, if the image cannot be written.
        std::fs::OpenOptions::new()
            .write(true)
            .open(image)
            .map_err(|e| GuestError::io("open for writing", image, e))?;
        let image = image
            .canonicalize()
            .map_err(|e| GuestError::io("resolve", image, e))?;
        let dir = image.parent().unwrap_or(Path::new("/"));
        let stem = image
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let file = tempfile::Builder::new()
            .prefix(&format!(".{stem}.imgferry-overlay-"))
            .suffix(".qcow2")
            .tempfile_in(dir)
            .map_err(|e| GuestError::io("create an overlay in", dir, e))?;
        let mut create = Command::new("qemu-img");
        create
            .args(["create", "-q", "-f", "qcow2", "-b"])
            .arg(&image)
            .args(["-F", format])
            .arg(file.path());
        run(create, "create the overlay", file.path())?;
        Ok(Self { file, image })
    }

    /// The overlay file.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Merges the overlay into the image, then deletes it.
    pub fn commit(self) -> Result<()> {
        let mut commit = Command::new("qemu-img");
        commit
            .args(["commit", "-q", "-d", "-f", "qcow2"])
            .arg(self.file.path());
        run(commit, "commit", &self.image)?;
        self.file
            .close()
            .map_err(|e| GuestError::io("remove the overlay of", &self.image, e))
    }
}

fn run(mut command: Command, action: &'static str, path: &Path) -> Result<()> {
    let output = command
        .output()
        .map_err(|e| GuestError::io("run qemu-img for", path, e))?;
    if output.status.success() {
        return Ok(());
    }
    Err(GuestError::Overlay {
        action,
        path: path.to_path_buf(),
        message: format!(
            "qemu-img failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ),
    })
}
