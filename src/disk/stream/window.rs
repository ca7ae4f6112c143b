//! [`Window`]: a sliding view of a sequential reader, for consumers whose requests start
//! at non-decreasing offsets but may overlap (compressed qcow2 clusters can share a host
//! cluster, and two guest clusters can map the same host cluster).
//!
//! Owns the buffer and the skipping; memory is bounded by the longest request.

use std::io::{self, Read};

/// Bytes skipped per read when moving forward over bytes nobody asked for.
const SKIP_CHUNK: usize = 1 << 20;

/// A sequential reader seen through a window starting at `base`.
pub(super) struct Window<R> {
    reader: R,
    base: u64,
    buf: Vec<u8>,
    /// Bytes taken from the reader so far.
    consumed: u64,
    eof: bool,
    /// Where skipped bytes go (allocated at the first skip).
    scratch: Vec<u8>,
}

impl<R: Read> Window<R> {
    pub(super) fn new(reader: R) -> Self {
        Self {
            reader,
            base: 0,
            buf: Vec::new(),
            consumed: 0,
            eof: false,
            scratch: Vec::new(),
        }
    }

    /// The bytes `[start, start + len)`, fewer when the reader ends first. `start` must
    /// not be below the start of an earlier request.
    pub(super) fn get(&mut self, start: u64, len: usize) -> io::Result<&[u8]> {
        if start < self.base {
            return Err(io::Error::other(format!(
                "the source was asked for byte {start} after byte {}",
                self.base
            )));
        }
        let drop = start - self.base;
        if drop >= self.buf.len() as u64 {
            let skip = drop - self.buf.len() as u64;
            self.buf.clear();
            self.skip(skip)?;
        } else {
            self.buf.drain(..drop as usize);
        }
        self.base = start;
        while self.buf.len() < len && !self.eof {
            let have = self.buf.len();
            self.buf.resize(len, 0);
            let n = read_some(&mut self.reader, &mut self.buf[have..])?;
            self.buf.truncate(have + n);
            self.consumed += n as u64;
            self.eof = n == 0;
        }
        Ok(&self.buf[..len.min(self.buf.len())])
    }

    /// Reads the rest of the source (so whatever wraps the reader, e.g. a digest, sees
    /// every byte) and returns how many bytes the reader delivered in all.
    pub(super) fn finish(mut self) -> io::Result<u64> {
        self.skip(u64::MAX)?;
        Ok(self.consumed)
    }

    /// Discards `count` bytes from the reader (fewer if it ends).
    fn skip(&mut self, mut count: u64) -> io::Result<()> {
        if count > 0 && self.scratch.is_empty() {
            self.scratch = vec![0u8; SKIP_CHUNK];
        }
        while count > 0 && !self.eof {
            let want = count.min(SKIP_CHUNK as u64) as usize;
            let n = read_some(&mut self.reader, &mut self.scratch[..want])?;
            self.consumed += n as u64;
            count -= n as u64;
            self.eof = n == 0;
        }
        Ok(())
    }
}

/// One read, retried on `Interrupted`.
fn read_some(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match reader.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            result => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_and_skipping_requests_see_the_right_bytes() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 253) as u8).collect();
        let mut window = Window::new(&data[..]);
        assert_eq!(window.get(10, 5).unwrap(), &data[10..15]);
        assert_eq!(window.get(12, 100).unwrap(), &data[12..112]); // overlaps
        assert_eq!(window.get(5000, 3).unwrap(), &data[5000..5003]); // skips
        assert!(window.get(4000, 1).is_err(), "going back is refused");
        assert_eq!(window.get(9998, 10).unwrap(), &data[9998..]); // short at the end
        assert_eq!(window.finish().unwrap(), 10_000);
    }
}
