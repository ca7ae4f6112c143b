//! [`OsInfo`]: an operating system found on a disk, and its [`Family`].
//!
//! Owns the description a backend's inspection fills in and the distro → family table
//! (so every backend classifies the same way). Must not: inspect anything itself.

use serde::Serialize;

/// An operating system root found by inspection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OsInfo {
    /// The backend's name for the root filesystem (e.g. `/dev/sda1`, `/dev/rhel/root`).
    pub root: String,
    /// `linux`, `windows`, `freebsd`, ... (`unknown` when inspection could not tell).
    pub kind: String,
    /// The distro as libguestfs names it: `debian`, `centos`, `rocky`, `opensuse`, ...
    pub distro: String,
    pub family: Family,
    pub major_version: i32,
    pub minor_version: i32,
    pub product_name: String,
    /// The hostname inspection read from the guest's configuration (may be empty).
    pub hostname: String,
    /// `(mountpoint, device)` from the guest's fstab, shortest mountpoint first.
    pub mountpoints: Vec<(String, String)>,
}

/// Distro families: where each keeps its network and hostname configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// RHEL, CentOS, Fedora, Rocky, AlmaLinux, Oracle, Scientific, and their clones.
    Rhel,
    /// Debian, Ubuntu, Mint, Kali.
    Debian,
    /// openSUSE, SLES.
    Suse,
    /// Anything else (still a guest: file-level operations apply).
    Other,
}

impl Family {
    /// The family of a distro named as libguestfs inspection names it.
    pub fn of_distro(distro: &str) -> Self {
        match distro {
            "rhel" | "centos" | "fedora" | "rocky" | "almalinux" | "alma" | "oraclelinux"
            | "scientificlinux" | "redhat-based" | "circle" | "eurolinux" | "navy" => Self::Rhel,
            "debian" | "ubuntu" | "linuxmint" | "kalilinux" | "pardus" => Self::Debian,
            "opensuse" | "sles" | "suse-based" => Self::Suse,
            _ => Self::Other,
        }
    }

    /// The lowercase name used in output.
    pub fn name(self) -> &'static str {
        match self {
            Self::Rhel => "rhel",
            Self::Debian => "debian",
            Self::Suse => "suse",
            Self::Other => "other",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families() {
        assert_eq!(Family::of_distro("rocky"), Family::Rhel);
        assert_eq!(Family::of_distro("centos"), Family::Rhel);
        assert_eq!(Family::of_distro("ubuntu"), Family::Debian);
        assert_eq!(Family::of_distro("opensuse"), Family::Suse);
        assert_eq!(Family::of_distro("archlinux"), Family::Other);
    }
}
