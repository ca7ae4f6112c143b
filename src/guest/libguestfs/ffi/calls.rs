//! The libguestfs calls imgferry uses, with the names and signatures of upstream's
//! Rust bindings (`guestfs` crate) so the backend reads the same.
//!
//! Owns: each call's C signature (from `guestfs.h`, libguestfs 1.48) and its result
//! conversion. Must not: interpret results.

use std::collections::HashMap;
use std::ffi::{c_char, c_int};

use super::{c_string, symbol, CStringList, Error, Handle, G};

/// `fn NAME(&self, arg: &str, ...) -> Result<T, Error>` calling `guestfs_NAME` with
/// each argument as a C string and converting its C result with `Handle::CONVERT`.
macro_rules! calls {
    ($($(#[$doc:meta])* $name:ident($($arg:ident),*) -> $ret:ty = $c_ret:ty, $convert:ident;)*) => {
        impl Handle {
            $(
                $(#[$doc])*
                pub fn $name(&self, $($arg: &str),*) -> Result<$ret, Error> {
                    // SAFETY: the signature written here is guestfs.h's.
                    let function = unsafe {
                        symbol::<unsafe extern "C" fn(G $(, calls!(@c $arg))*) -> $c_ret>(
                            concat!("guestfs_", stringify!($name)),
                        )?
                    };
                    $(let $arg = c_string($arg)?;)*
                    // SAFETY: a live handle and NUL-terminated arguments that outlive the call.
                    let result = unsafe { function(self.g $(, $arg.as_ptr())*) };
                    self.$convert(result)
                }
            )*
        }
    };
    (@c $arg:ident) => { *const c_char };
}

calls! {
    e2fsck_f(device) -> () = c_int, unit;
    inspect_get_distro(root) -> String = *mut c_char, string;
    inspect_get_hostname(root) -> String = *mut c_char, string;
    inspect_get_major_version(root) -> i32 = c_int, int;
    inspect_get_minor_version(root) -> i32 = c_int, int;
    inspect_get_mountpoints(root) -> HashMap<String, String> = *mut *mut c_char, hash;
    inspect_get_product_name(root) -> String = *mut c_char, string;
    inspect_get_type(root) -> String = *mut c_char, string;
    inspect_os() -> Vec<String> = *mut *mut c_char, strings;
    launch() -> () = c_int, unit;
    list_filesystems() -> HashMap<String, String> = *mut *mut c_char, hash;
    ln_s(target, linkname) -> () = c_int, unit;
    ls(directory) -> Vec<String> = *mut *mut c_char, strings;
    mkdir(path) -> () = c_int, unit;
    mount(mountable, mountpoint) -> () = c_int, unit;
    mount_ro(mountable, mountpoint) -> () = c_int, unit;
    pvchange_uuid_all() -> () = c_int, unit;
    pvs() -> Vec<String> = *mut *mut c_char, strings;
    pvuuid(device) -> String = *mut c_char, string;
    readlink(path) -> String = *mut c_char, string;
    rm(path) -> () = c_int, unit;
    rm_rf(path) -> () = c_int, unit;
    set_uuid(device, uuid) -> () = c_int, unit;
    shutdown() -> () = c_int, unit;
    sync() -> () = c_int, unit;
    truncate(path) -> () = c_int, unit;
    umount_all() -> () = c_int, unit;
    vfs_label(mountable) -> String = *mut c_char, string;
    vfs_type(mountable) -> String = *mut c_char, string;
    vfs_uuid(mountable) -> String = *mut c_char, string;
    vgchange_uuid_all() -> () = c_int, unit;
    vgs() -> Vec<String> = *mut *mut c_char, strings;
    vguuid(vgname) -> String = *mut c_char, string;
}

/// `struct guestfs_statns`, field for field.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct StatNS {
    pub st_dev: i64,
    pub st_ino: i64,
    pub st_mode: i64,
    pub st_nlink: i64,
    pub st_uid: i64,
    pub st_gid: i64,
    pub st_rdev: i64,
    pub st_size: i64,
    pub st_blksize: i64,
    pub st_blocks: i64,
    pub st_atime_sec: i64,
    pub st_atime_nsec: i64,
    pub st_mtime_sec: i64,
    pub st_mtime_nsec: i64,
    pub st_ctime_sec: i64,
    pub st_ctime_nsec: i64,
    pub st_spare1: i64,
    pub st_spare2: i64,
    pub st_spare3: i64,
    pub st_spare4: i64,
    pub st_spare5: i64,
    pub st_spare6: i64,
}

/// `struct guestfs_statns_list`.
#[repr(C)]
struct StatNSList {
    len: u32,
    val: *const StatNS,
}

/// libguestfs's version (`guestfs_version`).
#[derive(Debug, Clone)]
pub struct Version {
    pub major: i64,
    pub minor: i64,
    pub release: i64,
    pub extra: String,
}

/// `struct guestfs_version`.
#[repr(C)]
struct RawVersion {
    major: i64,
    minor: i64,
    release: i64,
    extra: *const c_char,
}

/// Options of [`Handle::add_drive`] (`guestfs_add_drive_opts`); `None` leaves
/// libguestfs's default.
#[derive(Debug, Clone, Default)]
pub struct AddDriveOptArgs<'a> {
    pub readonly: Option<bool>,
    pub format: Option<&'a str>,
}

/// `struct guestfs_add_drive_opts_argv`.
#[repr(C)]
struct RawAddDriveOptArgs {
    bitmask: u64,
    readonly: c_int,
    format: *const c_char,
    iface: *const c_char,
    name: *const c_char,
    label: *const c_char,
    protocol: *const c_char,
    server: *const *const c_char,
    username: *const c_char,
    secret: *const c_char,
    cachemode: *const c_char,
    discard: *const c_char,
    copyonread: c_int,
    blocksize: c_int,
}

/// Options of [`Handle::xfs_repair`].
#[derive(Debug, Clone, Default)]
pub struct XfsRepairOptArgs {
    /// `-n`: check only.
    pub nomodify: Option<bool>,
}

/// `struct guestfs_xfs_repair_argv`.
#[repr(C)]
struct RawXfsRepairOptArgs {
    bitmask: u64,
    forcelogzero: c_int,
    nomodify: c_int,
    noprefetch: c_int,
    forcegeometry: c_int,
    maxmem: i64,
    ihashsize: i64,
    bhashsize: i64,
    agstride: i64,
    logdev: *const c_char,
    rtdev: *const c_char,
}

/// Options of [`Handle::btrfs_fsck`].
#[derive(Debug, Clone, Default)]
pub struct BtrfsFsckOptArgs {
    pub repair: Option<bool>,
}

/// `struct guestfs_btrfs_fsck_argv`.
#[repr(C)]
struct RawBtrfsFsckOptArgs {
    bitmask: u64,
    superblock: i64,
    repair: c_int,
}

/// An optional flag: its bitmask bit and C value.
fn flag(value: Option<bool>, bit: u32) -> (u64, c_int) {
    value.map_or((0, 0), |on| (1 << bit, c_int::from(on)))
}

impl Handle {
    /// `guestfs_add_drive_opts`.
    pub fn add_drive(&self, filename: &str, options: AddDriveOptArgs) -> Result<(), Error> {
        // SAFETY: signature from guestfs.h.
        let function = unsafe {
            symbol::<unsafe extern "C" fn(G, *const c_char, *const RawAddDriveOptArgs) -> c_int>(
                "guestfs_add_drive_opts_argv",
            )?
        };
        let filename = c_string(filename)?;
        let format = options.format.map(c_string).transpose()?;
        let (readonly_bit, readonly) = flag(options.readonly, 0);
        let raw = RawAddDriveOptArgs {
            bitmask: readonly_bit | if format.is_some() { 1 << 1 } else { 0 },
            readonly,
            format: format.as_ref().map_or(std::ptr::null(), |f| f.as_ptr()),
            iface: std::ptr::null(),
            name: std::ptr::null(),
            label: std::ptr::null(),
            protocol: std::ptr::null(),
            server: std::ptr::null(),
            username: std::ptr::null(),
            secret: std::ptr::null(),
            cachemode: std::ptr::null(),
            discard: std::ptr::null(),
            copyonread: 0,
            blocksize: 0,
        };
        // SAFETY: a live handle; the strings outlive the call.
        self.unit(unsafe { function(self.g, filename.as_ptr(), &raw) })
    }

    /// `guestfs_xfs_repair`: its exit status (0 clean, 1 damage found).
    pub fn xfs_repair(&self, device: &str, options: XfsRepairOptArgs) -> Result<i32, Error> {
        // SAFETY: signature from guestfs.h.
        let function = unsafe {
            symbol::<unsafe extern "C" fn(G, *const c_char, *const RawXfsRepairOptArgs) -> c_int>(
                "guestfs_xfs_repair_argv",
            )?
        };
        let device = c_string(device)?;
        let (bitmask, nomodify) = flag(options.nomodify, 1);
        let raw = RawXfsRepairOptArgs {
            bitmask,
            forcelogzero: 0,
            nomodify,
            noprefetch: 0,
            forcegeometry: 0,
            maxmem: 0,
            ihashsize: 0,
            bhashsize: 0,
            agstride: 0,
            logdev: std::ptr::null(),
            rtdev: std::ptr::null(),
        };
        // SAFETY: a live handle; the strings outlive the call.
        self.int(unsafe { function(self.g, device.as_ptr(), &raw) })
    }

    /// `guestfs_btrfs_fsck`.
    pub fn btrfs_fsck(&self, device: &str, options: BtrfsFsckOptArgs) -> Result<(), Error> {
        // SAFETY: signature from guestfs.h.
        let function = unsafe {
            symbol::<unsafe extern "C" fn(G, *const c_char, *const RawBtrfsFsckOptArgs) -> c_int>(
                "guestfs_btrfs_fsck_argv",
            )?
        };
        let device = c_string(device)?;
        let (bitmask, repair) = flag(options.repair, 1);
        let raw = RawBtrfsFsckOptArgs {
            bitmask,
            superblock: 0,
            repair,
        };
        // SAFETY: a live handle; the strings outlive the call.
        self.unit(unsafe { function(self.g, device.as_ptr(), &raw) })
    }

    /// `guestfs_debug`: a debug subcommand of the daemon and its output.
    pub fn debug(&self, subcmd: &str, extraargs: &[&str]) -> Result<String, Error> {
        // SAFETY: signature from guestfs.h.
        let function = unsafe {
            symbol::<unsafe extern "C" fn(G, *const c_char, *const *const c_char) -> *mut c_char>(
                "guestfs_debug",
            )?
        };
        let subcmd = c_string(subcmd)?;
        let extraargs = CStringList::new(extraargs)?;
        // SAFETY: a live handle; the strings outlive the call.
        self.string(unsafe { function(self.g, subcmd.as_ptr(), extraargs.as_ptr()) })
    }

    /// `guestfs_set_backend_settings`.
    pub fn set_backend_settings(&self, settings: &[&str]) -> Result<(), Error> {
        // SAFETY: signature from guestfs.h.
        let function = unsafe {
            symbol::<unsafe extern "C" fn(G, *const *const c_char) -> c_int>(
                "guestfs_set_backend_settings",
            )?
        };
        let settings = CStringList::new(settings)?;
        // SAFETY: a live handle; the strings outlive the call.
        self.unit(unsafe { function(self.g, settings.as_ptr()) })
    }

    /// `guestfs_feature_available`: whether the appliance supports all of `groups`.
    pub fn feature_available(&self, groups: &[&str]) -> Result<bool, Error> {
        // SAFETY: signature from guestfs.h.
        let function = unsafe {
            symbol::<unsafe extern "C" fn(G, *const *const c_char) -> c_int>(
                "guestfs_feature_available",
            )?
        };
        let groups = CStringList::new(groups)?;
        // SAFETY: a live handle; the strings outlive the call.
        self.int(unsafe { function(self.g, groups.as_ptr()) })
            .map(|available| available != 0)
    }

    /// `guestfs_vg_activate_all`.
    pub fn vg_activate_all(&self, activate: bool) -> Result<(), Error> {
        // SAFETY: signature from guestfs.h.
        let function = unsafe {
            symbol::<unsafe extern "C" fn(G, c_int) -> c_int>("guestfs_vg_activate_all")?
        };
        // SAFETY: a live handle.
        self.unit(unsafe { function(self.g, c_int::from(activate)) })
    }

    /// `guestfs_lstatns`.
    pub fn lstatns(&self, path: &str) -> Result<StatNS, Error> {
        // SAFETY: signatures from guestfs.h.
        let (function, free) = unsafe {
            (
                symbol::<unsafe extern "C" fn(G, *const c_char) -> *mut StatNS>("guestfs_lstatns")?,
                symbol::<unsafe extern "C" fn(*mut StatNS)>("guestfs_free_statns")?,
            )
        };
        let path = c_string(path)?;
        // SAFETY: a live handle; a non-null result is one struct, ours to free.
        unsafe {
            let stat = function(self.g, path.as_ptr());
            if stat.is_null() {
                return Err(self.last_error());
            }
            let copy = *stat;
            free(stat);
            Ok(copy)
        }
    }

    /// `guestfs_lstatnslist`: one stat per name, `st_ino` -1 for a missing name.
    pub fn lstatnslist(&self, path: &str, names: &[&str]) -> Result<Vec<StatNS>, Error> {
        // SAFETY: signatures from guestfs.h.
        let (function, free) = unsafe {
            (
                symbol::<
                    unsafe extern "C" fn(G, *const c_char, *const *const c_char) -> *mut StatNSList,
                >("guestfs_lstatnslist")?,
                symbol::<unsafe extern "C" fn(*mut StatNSList)>("guestfs_free_statns_list")?,
            )
        };
        let path = c_string(path)?;
        let names = CStringList::new(names)?;
        // SAFETY: a live handle; a non-null result is `len` structs, ours to free.
        unsafe {
            let list = function(self.g, path.as_ptr(), names.as_ptr());
            if list.is_null() {
                return Err(self.last_error());
            }
            let (len, val) = ((*list).len as usize, (*list).val);
            let stats = if len == 0 || val.is_null() {
                Vec::new()
            } else {
                std::slice::from_raw_parts(val, len).to_vec()
            };
            free(list);
            Ok(stats)
        }
    }

    /// `guestfs_read_file`: the whole file (libguestfs caps it at its message size).
    pub fn read_file(&self, path: &str) -> Result<Vec<u8>, Error> {
        // SAFETY: signature from guestfs.h.
        let function = unsafe {
            symbol::<unsafe extern "C" fn(G, *const c_char, *mut usize) -> *mut c_char>(
                "guestfs_read_file",
            )?
        };
        let path = c_string(path)?;
        let mut size = 0usize;
        // SAFETY: a live handle; a non-null result is `size` bytes, ours to free.
        unsafe {
            let content = function(self.g, path.as_ptr(), &mut size);
            if content.is_null() {
                return Err(self.last_error());
            }
            let bytes = std::slice::from_raw_parts(content.cast::<u8>(), size).to_vec();
            libc::free(content.cast());
            Ok(bytes)
        }
    }

    /// `guestfs_write`: creates or replaces `path` with `content`.
    pub fn write(&self, path: &str, content: &[u8]) -> Result<(), Error> {
        // SAFETY: signature from guestfs.h.
        let function = unsafe {
            symbol::<unsafe extern "C" fn(G, *const c_char, *const c_char, usize) -> c_int>(
                "guestfs_write",
            )?
        };
        let path = c_string(path)?;
        // SAFETY: a live handle; `content` is read for its length only.
        self.unit(unsafe {
            function(
                self.g,
                path.as_ptr(),
                content.as_ptr().cast(),
                content.len(),
            )
        })
    }

    /// `guestfs_pwrite`: writes `content` into `path` at `offset` without truncating
    /// it; returns how many bytes were written (possibly fewer).
    pub fn pwrite(&self, path: &str, content: &[u8], offset: i64) -> Result<usize, Error> {
        // SAFETY: signature from guestfs.h.
        let function = unsafe {
            symbol::<unsafe extern "C" fn(G, *const c_char, *const c_char, usize, i64) -> c_int>(
                "guestfs_pwrite",
            )?
        };
        let path = c_string(path)?;
        // SAFETY: a live handle; `content` is read for its length only.
        let written = self.int(unsafe {
            function(
                self.g,
                path.as_ptr(),
                content.as_ptr().cast(),
                content.len(),
                offset,
            )
        })?;
        Ok(usize::try_from(written).unwrap_or(0))
    }

    /// `guestfs_version`.
    pub fn version(&self) -> Result<Version, Error> {
        // SAFETY: signatures from guestfs.h.
        let (function, free) = unsafe {
            (
                symbol::<unsafe extern "C" fn(G) -> *mut RawVersion>("guestfs_version")?,
                symbol::<unsafe extern "C" fn(*mut RawVersion)>("guestfs_free_version")?,
            )
        };
        // SAFETY: a live handle; a non-null result is one struct, ours to free.
        unsafe {
            let raw = function(self.g);
            if raw.is_null() {
                return Err(self.last_error());
            }
            let extra = if (*raw).extra.is_null() {
                String::new()
            } else {
                std::ffi::CStr::from_ptr((*raw).extra)
                    .to_string_lossy()
                    .into_owned()
            };
            let version = Version {
                major: (*raw).major,
                minor: (*raw).minor,
                release: (*raw).release,
                extra,
            };
            free(raw);
            Ok(version)
        }
    }
}
