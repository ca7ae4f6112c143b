//! A thin binding to libguestfs's C API, loaded at run time: `libguestfs.so.0` is
//! opened (`dlopen`) the first time a [`Handle`] is created, so every other command
//! (`info`, `convert`, `amend`, ...) starts without loading libguestfs and its ~60
//! shared libraries, and imgferry builds without libguestfs-dev.
//!
//! Owns: loading the library, converting arguments and results between Rust and C,
//! freeing what libguestfs allocates, and turning a failed call into [`Error`] with
//! libguestfs's own message. Must not: know what a call is used for (that is the
//! backend above it).
//!
//! Adding a call: one line in [`calls`] for the common shapes (string arguments;
//! a unit, int, string, string list or hash result), or a short method there for the
//! rest. The C signature written there must match `guestfs.h` exactly: it is not
//! checked by the compiler.

mod calls;

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::OnceLock;

pub use calls::{AddDriveOptArgs, BtrfsFsckOptArgs, StatNS, Version, XfsRepairOptArgs};

/// The shared object, by the SONAME libguestfs has kept since 1.0.
pub const LIBRARY: &str = "libguestfs.so.0";

/// libguestfs's opaque `guestfs_h`.
#[repr(C)]
struct RawHandle {
    _private: [u8; 0],
}

/// A `guestfs_h *` as passed to every call.
type G = *mut RawHandle;

/// What can go wrong calling libguestfs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The library could not be loaded (not installed, or a broken installation).
    #[error("cannot load {LIBRARY}: {0}")]
    Unavailable(String),
    /// The installed libguestfs lacks a function (older than this binding expects).
    #[error("{LIBRARY} has no {symbol} (libguestfs too old?)")]
    MissingSymbol { symbol: &'static str },
    /// A call failed; libguestfs's message and errno.
    #[error("{message}")]
    Api { message: String, errno: i32 },
    /// An argument holds a NUL byte, which C strings cannot carry.
    #[error("argument {0:?} contains a NUL byte")]
    Nul(String),
    /// libguestfs returned text that is not UTF-8.
    #[error("libguestfs returned text that is not UTF-8: {0:?}")]
    NotUtf8(String),
}

/// The library, loaded once per process; the error text when it cannot be.
fn library() -> Result<&'static libloading::Library, Error> {
    static LOADED: OnceLock<Result<libloading::Library, String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            // SAFETY: libguestfs's initialisers only set up its own globals.
            unsafe { libloading::Library::new(LIBRARY) }.map_err(|error| {
                // The loader's own words ("cannot open shared object file: ...") are in
                // the source; libloading's Display only says "dlopen failed".
                std::error::Error::source(&error)
                    .map_or_else(|| error.to_string(), ToString::to_string)
            })
        })
        .as_ref()
        .map_err(|message| Error::Unavailable(message.clone()))
}

/// The C function `symbol` as a `T`.
///
/// # Safety
/// `T` must be the function's exact C signature from `guestfs.h`.
unsafe fn symbol<T: Copy>(symbol: &'static str) -> Result<T, Error> {
    let library = library()?;
    // SAFETY: the caller vouches for `T`; the library is never unloaded (it lives in a
    // static), so the pointer stays valid for the whole process.
    unsafe { library.get::<T>(symbol) }
        .map(|found| *found)
        .map_err(|_| Error::MissingSymbol { symbol })
}

/// A libguestfs handle; closed (appliance shut down, if still running) when dropped.
/// Not `Send`: libguestfs handles must be used from one thread.
pub struct Handle {
    g: G,
    close: unsafe extern "C" fn(G),
}

impl Handle {
    /// `guestfs_create`, with libguestfs's default error handler (which prints every
    /// error to stderr) switched off: errors are returned, never printed.
    pub fn create() -> Result<Self, Error> {
        type ErrorHandler = Option<unsafe extern "C" fn(G, *mut c_void, *const c_char)>;
        // SAFETY: signatures from guestfs.h.
        let (create, close, set_error_handler) = unsafe {
            (
                symbol::<unsafe extern "C" fn() -> G>("guestfs_create")?,
                symbol::<unsafe extern "C" fn(G)>("guestfs_close")?,
                symbol::<unsafe extern "C" fn(G, ErrorHandler, *mut c_void)>(
                    "guestfs_set_error_handler",
                )?,
            )
        };
        // SAFETY: no arguments; a null result is checked below.
        let g = unsafe { create() };
        if g.is_null() {
            return Err(Error::Api {
                message: "guestfs_create failed".to_owned(),
                errno: std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
            });
        }
        // SAFETY: `g` is a live handle; a null handler means "store, do not print".
        unsafe { set_error_handler(g, None, std::ptr::null_mut()) };
        Ok(Self { g, close })
    }

    /// The error of the call that just failed on this handle.
    fn last_error(&self) -> Error {
        // SAFETY: signatures from guestfs.h.
        let functions = unsafe {
            symbol::<unsafe extern "C" fn(G) -> *const c_char>("guestfs_last_error").and_then(
                |message| {
                    Ok((
                        message,
                        symbol::<unsafe extern "C" fn(G) -> c_int>("guestfs_last_errno")?,
                    ))
                },
            )
        };
        let (last_error, last_errno) = match functions {
            Ok(found) => found,
            Err(error) => return error,
        };
        // SAFETY: `self.g` is live; the message belongs to the handle (not freed here)
        // and is copied before the next call.
        let (message, errno) = unsafe { (last_error(self.g), last_errno(self.g)) };
        let message = if message.is_null() {
            "unknown libguestfs error".to_owned()
        } else {
            // SAFETY: a NUL-terminated string owned by the handle.
            unsafe { CStr::from_ptr(message) }
                .to_string_lossy()
                .into_owned()
        };
        Error::Api { message, errno }
    }

    /// An `int` result: -1 is an error.
    fn int(&self, result: c_int) -> Result<i32, Error> {
        if result == -1 {
            Err(self.last_error())
        } else {
            Ok(result)
        }
    }

    /// An `int` result used only for success.
    fn unit(&self, result: c_int) -> Result<(), Error> {
        self.int(result).map(drop)
    }

    /// A `char *` result the caller must free: NULL is an error.
    fn string(&self, result: *mut c_char) -> Result<String, Error> {
        if result.is_null() {
            return Err(self.last_error());
        }
        // SAFETY: a NUL-terminated string malloc'ed by libguestfs, ours to free.
        unsafe {
            let text = utf8(CStr::from_ptr(result));
            libc::free(result.cast());
            text
        }
    }

    /// A NULL-terminated `char **` result, every string and the array ours to free.
    fn strings(&self, result: *mut *mut c_char) -> Result<Vec<String>, Error> {
        if result.is_null() {
            return Err(self.last_error());
        }
        let mut found = Vec::new();
        let mut failed = None;
        // SAFETY: a NULL-terminated array of malloc'ed strings, all ours to free.
        unsafe {
            let mut at = result;
            while !(*at).is_null() {
                match utf8(CStr::from_ptr(*at)) {
                    Ok(text) => found.push(text),
                    Err(error) => failed = failed.or(Some(error)),
                }
                libc::free((*at).cast());
                at = at.add(1);
            }
            libc::free(result.cast());
        }
        failed.map_or(Ok(found), Err)
    }

    /// A `char **` of alternating keys and values.
    fn hash(&self, result: *mut *mut c_char) -> Result<HashMap<String, String>, Error> {
        let flat = self.strings(result)?;
        if flat.len() % 2 != 0 {
            return Err(Error::Api {
                message: "libguestfs returned a hash with an odd number of strings".to_owned(),
                errno: 0,
            });
        }
        let mut pairs = flat.into_iter();
        let mut map = HashMap::new();
        while let (Some(key), Some(value)) = (pairs.next(), pairs.next()) {
            map.insert(key, value);
        }
        Ok(map)
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: `g` came from guestfs_create and is closed exactly once.
        unsafe { (self.close)(self.g) }
    }
}

/// A C string argument.
fn c_string(text: &str) -> Result<CString, Error> {
    CString::new(text).map_err(|_| Error::Nul(text.to_owned()))
}

/// A NULL-terminated `char *const *` argument.
struct CStringList {
    /// The strings `pointers` point into: must live as long as they do.
    _owned: Vec<CString>,
    pointers: Vec<*const c_char>,
}

impl CStringList {
    fn new(items: &[&str]) -> Result<Self, Error> {
        let owned = items
            .iter()
            .map(|item| c_string(item))
            .collect::<Result<Vec<_>, _>>()?;
        let mut pointers: Vec<*const c_char> = owned.iter().map(|s| s.as_ptr()).collect();
        pointers.push(std::ptr::null());
        Ok(Self {
            _owned: owned,
            pointers,
        })
    }

    fn as_ptr(&self) -> *const *const c_char {
        self.pointers.as_ptr()
    }
}

fn utf8(text: &CStr) -> Result<String, Error> {
    text.to_str()
        .map(str::to_owned)
        .map_err(|_| Error::NotUtf8(text.to_string_lossy().into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_with_nul_are_refused() {
        assert!(matches!(c_string("a\0b"), Err(Error::Nul(_))));
        assert!(matches!(
            CStringList::new(&["ok", "x\0"]),
            Err(Error::Nul(_))
        ));
        let list = CStringList::new(&["a", "b"]).unwrap();
        // SAFETY: three pointers, the last NULL.
        unsafe {
            assert_eq!(CStr::from_ptr(*list.as_ptr()).to_str(), Ok("a"));
            assert!((*list.as_ptr().add(2)).is_null());
        }
    }
}
