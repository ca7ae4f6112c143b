//! [`MemorySource`]: a [`ReadAt`] over bytes held in memory.
//!
//! Owns nothing but the byte buffer. Used by tests and the fuzz target to open whole
//! images without touching the file system; it must not grow into a cache or a writer.

use std::io;

use super::ReadAt;

/// An immutable in-memory byte source.
#[derive(Debug, Clone, Default)]
pub struct MemorySource {
    bytes: Vec<u8>,
    name: String,
}

impl MemorySource {
    /// Wraps `bytes`; `name` is what error messages call the source.
    pub fn new(bytes: Vec<u8>, name: impl Into<String>) -> Self {
        Self {
            bytes,
            name: name.into(),
        }
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl ReadAt for MemorySource {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).ok();
        let range = start.and_then(|start| Some(start..start.checked_add(buf.len())?));
        match range.and_then(|range| self.bytes.get(range)) {
            Some(bytes) => {
                buf.copy_from_slice(bytes);
                Ok(())
            }
            None => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "read of {} bytes at {offset} past the end of {} ({} bytes)",
                    buf.len(),
                    self.name,
                    self.bytes.len()
                ),
            )),
        }
    }

    fn size(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_inside_and_refuses_past_the_end() {
        let source = MemorySource::new(vec![1, 2, 3, 4], "mem");
        let mut buf = [0u8; 2];
        source.read_exact_at(&mut buf, 2).expect("inside");
        assert_eq!(buf, [3, 4]);
        let err = source.read_exact_at(&mut buf, 3).expect_err("past the end");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(source.read_exact_at(&mut buf, u64::MAX).is_err());
    }
}
