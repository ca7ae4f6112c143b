//! Whole-file digests through the system's OpenSSL `libcrypto`, loaded at run time.
//!
//! OpenSSL's hand-tuned assembly is faster than the pure-Rust crates on the CPUs we
//! measured (SHA-512 on one core: ~800 MB/s against ~510 MB/s; MD5 ~760 against ~570),
//! and one core of SHA-512 is what bounds a verified download or `verify --sha512`.
//! `libcrypto.so.3` is on every current Debian and Ubuntu system (curl, ssh and Python
//! need it); when it is missing, or refuses a digest (MD5 under a FIPS policy), [`Evp::new`]
//! returns `None` and the caller uses the Rust implementation, which gives the same
//! bytes. Only the five EVP digest calls are used.
//!
//! Owns: loading the library once per process, those calls, and a context's life.
//! Must not: choose algorithms (that is [`super::algorithm`]).

use std::ffi::{c_char, c_int, c_uint, c_void, CString};
use std::ptr::{null_mut, NonNull};
use std::sync::OnceLock;

/// The SONAME of OpenSSL 3's library.
const LIBRARY: &str = "libcrypto.so.3";

/// `EVP_MAX_MD_SIZE`: the largest digest OpenSSL writes.
const MAX_DIGEST: usize = 64;

type CtxNew = unsafe extern "C" fn() -> *mut c_void;
type CtxFree = unsafe extern "C" fn(*mut c_void);
type DigestByName = unsafe extern "C" fn(*const c_char) -> *const c_void;
type DigestInit = unsafe extern "C" fn(*mut c_void, *const c_void, *mut c_void) -> c_int;
type DigestUpdate = unsafe extern "C" fn(*mut c_void, *const c_void, usize) -> c_int;
type DigestFinal = unsafe extern "C" fn(*mut c_void, *mut u8, *mut c_uint) -> c_int;

/// The loaded library and the functions we call (prototypes from `<openssl/evp.h>`).
struct Api {
    ctx_new: CtxNew,
    ctx_free: CtxFree,
    by_name: DigestByName,
    init: DigestInit,
    update: DigestUpdate,
    finish: DigestFinal,
    /// Kept so the function pointers stay valid; never unloaded (it lives in a static).
    _library: libloading::Library,
}

fn api() -> Option<&'static Api> {
    static API: OnceLock<Option<Api>> = OnceLock::new();
    API.get_or_init(load).as_ref()
}

fn load() -> Option<Api> {
    // SAFETY: libcrypto's initialisers only set up its own state.
    let library = unsafe { libloading::Library::new(LIBRARY) }.ok()?;
    // SAFETY: each type above is the exact C prototype of the symbol it is read as.
    unsafe {
        let ctx_new = *library.get::<CtxNew>(b"EVP_MD_CTX_new\0").ok()?;
        let ctx_free = *library.get::<CtxFree>(b"EVP_MD_CTX_free\0").ok()?;
        let by_name = *library
            .get::<DigestByName>(b"EVP_get_digestbyname\0")
            .ok()?;
        let init = *library.get::<DigestInit>(b"EVP_DigestInit_ex\0").ok()?;
        let update = *library.get::<DigestUpdate>(b"EVP_DigestUpdate\0").ok()?;
        let finish = *library.get::<DigestFinal>(b"EVP_DigestFinal_ex\0").ok()?;
        Some(Api {
            ctx_new,
            ctx_free,
            by_name,
            init,
            update,
            finish,
            _library: library,
        })
    }
}

/// One running digest in an OpenSSL `EVP_MD_CTX`.
pub(crate) struct Evp {
    api: &'static Api,
    ctx: NonNull<c_void>,
    /// A call failed (OpenSSL only fails on misuse): the digest comes out empty, so it
    /// can never match an expected value.
    failed: bool,
}

// SAFETY: the context is owned by this value and used by one thread at a time (`&mut`);
// OpenSSL contexts carry no thread affinity.
unsafe impl Send for Evp {}

impl Evp {
    /// A context for OpenSSL's digest `name` (`"SHA512"`, `"MD5"`, ...); `None` when the
    /// library or the digest is unavailable.
    pub(crate) fn new(name: &str) -> Option<Self> {
        let api = api()?;
        let name = CString::new(name).ok()?;
        // SAFETY: `name` is a valid C string; a null digest or context is checked before
        // use, and a context that failed to initialise is freed here.
        unsafe {
            let digest = (api.by_name)(name.as_ptr());
            if digest.is_null() {
                return None;
            }
            let ctx = NonNull::new((api.ctx_new)())?;
            if (api.init)(ctx.as_ptr(), digest, null_mut()) != 1 {
                (api.ctx_free)(ctx.as_ptr());
                return None;
            }
            Some(Self {
                api,
                ctx,
                failed: false,
            })
        }
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        if self.failed || data.is_empty() {
            return;
        }
        // SAFETY: the context is initialised; `data` is valid for `data.len()` bytes.
        let ok = unsafe { (self.api.update)(self.ctx.as_ptr(), data.as_ptr().cast(), data.len()) };
        self.failed = ok != 1;
    }

    /// The digest bytes; empty when a call failed.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        if self.failed {
            return Vec::new();
        }
        let mut out = [0u8; MAX_DIGEST];
        let mut len: c_uint = 0;
        // SAFETY: `out` has room for any digest (EVP_MAX_MD_SIZE); `len` receives its size.
        let ok = unsafe { (self.api.finish)(self.ctx.as_ptr(), out.as_mut_ptr(), &mut len) };
        self.failed = ok != 1;
        match usize::try_from(len) {
            Ok(len) if !self.failed && len <= MAX_DIGEST => out[..len].to_vec(),
            _ => Vec::new(),
        }
    }
}

impl Drop for Evp {
    fn drop(&mut self) {
        // SAFETY: the context came from EVP_MD_CTX_new and is freed exactly once.
        unsafe { (self.api.ctx_free)(self.ctx.as_ptr()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest as _;

    fn pieces() -> Vec<Vec<u8>> {
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 31 % 253) as u8).collect();
        vec![
            Vec::new(),
            b"abc".to_vec(),
            vec![0u8; 127],
            vec![0xffu8; 128],
            big,
        ]
    }

    fn openssl(name: &str, data: &[u8]) -> Vec<u8> {
        let mut evp = Evp::new(name).expect("libcrypto.so.3 is installed on Debian and Ubuntu");
        // Fed in uneven pieces, as streams arrive.
        for piece in data.chunks(65_521) {
            evp.update(piece);
        }
        evp.finish()
    }

    #[test]
    fn libcrypto_gives_the_same_digests_as_the_rust_crates() {
        for data in pieces() {
            assert_eq!(
                openssl("SHA512", &data),
                sha2::Sha512::digest(&data).to_vec()
            );
            assert_eq!(
                openssl("SHA384", &data),
                sha2::Sha384::digest(&data).to_vec()
            );
            assert_eq!(
                openssl("SHA256", &data),
                sha2::Sha256::digest(&data).to_vec()
            );
            assert_eq!(openssl("MD5", &data), md5::Md5::digest(&data).to_vec());
        }
    }

    #[test]
    fn an_unknown_digest_is_none() {
        assert!(Evp::new("NO-SUCH-DIGEST").is_none());
        assert!(Evp::new("SHA\u{0}512").is_none());
    }
}
