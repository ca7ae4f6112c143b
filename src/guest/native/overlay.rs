//! [`Overlay`]: the edits made to one volume, held in memory as whole blocks
//! (block number → new content) or as runs of blocks to zero (what scrubbing freed
//! blocks asks for: no memory per block), until they are committed, and the read path
//! that lays them over the volume's bytes, so every later read sees every earlier edit.
//!
//! Owns the edit map, its memory bounds ([`MAX_OVERLAY_BYTES`], [`MAX_ZERO_RUNS`]) and
//! the disk writes it amounts to ([`Overlay::disk_writes`]). Must not: write to the disk (the
//! guest layer commits the list through one seam, after its checks), or interpret
//! what the blocks hold.

use std::collections::BTreeMap;

use super::error::{NativeError, Result};
use super::volume::Volume;
use crate::disk::patch::ZeroRun;
use crate::disk::VirtualDisk;

/// Most bytes of edited blocks held: sysprep touches a few hundred blocks; a hostile
/// tree to remove must not make the overlay grow without end.
pub const MAX_OVERLAY_BYTES: u64 = 256 << 20;
/// Most separate runs of zeroed blocks: each freed extent is one (adjacent ones merge),
/// so a hostile fragmented file cannot make the map grow without end.
pub const MAX_ZERO_RUNS: usize = 1 << 22;
/// Bytes compared per read when looking for what is already zero on the disk.
const ZERO_SCAN: u64 = 1 << 20;

/// The writes an overlay amounts to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskWrites {
    /// `(disk byte offset, bytes)`, sorted.
    pub data: Vec<(u64, Vec<u8>)>,
    /// `(disk byte offset, length)` to set to zero, sorted, disjoint from `data`.
    pub zeros: Vec<ZeroRun>,
}

impl DiskWrites {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty() && self.zeros.is_empty()
    }

    /// Bytes the zero runs cover.
    pub fn zero_bytes(&self) -> u64 {
        self.zeros.iter().map(|(_, len)| len).sum()
    }

    /// Everything as data writes, the runs of zeros as zero-filled buffers, sorted: for
    /// consumers that take only data (the streaming plan, today). Allocates
    /// [`DiskWrites::zero_bytes`] bytes.
    pub fn into_data_writes(self) -> Vec<(u64, Vec<u8>)> {
        let mut all = self.data;
        all.extend(
            self.zeros
                .into_iter()
                .map(|(at, len)| (at, vec![0; len as usize])),
        );
        all.sort_unstable_by_key(|(at, _)| *at);
        all
    }

    /// Adds `other`'s writes (the caller keeps the two disjoint).
    pub fn extend(&mut self, other: DiskWrites) {
        self.data.extend(other.data);
        self.zeros.extend(other.zeros);
    }
}

/// A volume with in-memory edits in units of `block_size` bytes.
#[derive(Debug, Clone)]
pub struct Overlay {
    volume: Volume,
    block_size: u32,
    blocks: BTreeMap<u64, Vec<u8>>,
    /// Runs of blocks that read as zeros: first block → end (exclusive). Disjoint from
    /// each other (adjacent runs are merged) and from `blocks`.
    zeroed: BTreeMap<u64, u64>,
}

impl Overlay {
    /// No edits yet over `volume`, edited in blocks of `block_size` bytes (a power of
    /// two the caller validated).
    pub fn new(volume: Volume, block_size: u32) -> Self {
        Self {
            volume,
            block_size,
            blocks: BTreeMap::new(),
            zeroed: BTreeMap::new(),
        }
    }

    /// The volume underneath.
    pub fn volume(&self) -> &Volume {
        &self.volume
    }

    /// Whether nothing was edited.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty() && self.zeroed.is_empty()
    }

    /// How many blocks were edited (zeroed ones not counted).
    pub fn edited_blocks(&self) -> usize {
        self.blocks.len()
    }

    /// How many blocks are to be zeroed.
    pub fn zeroed_blocks(&self) -> u64 {
        self.zeroed.iter().map(|(start, end)| end - start).sum()
    }

    /// Drops every edit.
    pub fn discard(&mut self) {
        self.blocks.clear();
        self.zeroed.clear();
    }

    /// Makes blocks `[first, first + count)` read as zeros (their earlier edits are
    /// dropped). The caller checked they lie inside the volume.
    pub fn zero_blocks(&mut self, first: u64, count: u64) -> Result<()> {
        let Some(mut end) = first.checked_add(count).filter(|_| count > 0) else {
            return Ok(());
        };
        let mut start = first;
        let edited: Vec<u64> = self.blocks.range(first..end).map(|(&b, _)| b).collect();
        for block in edited {
            self.blocks.remove(&block);
        }
        // Absorb every run that overlaps or touches [start, end).
        if let Some((&s, &e)) = self.zeroed.range(..=start).next_back() {
            if e >= start {
                start = s;
                end = end.max(e);
                self.zeroed.remove(&s);
            }
        }
        let touching: Vec<(u64, u64)> = self
            .zeroed
            .range(start..=end)
            .map(|(&s, &e)| (s, e))
            .collect();
        for (s, e) in touching {
            end = end.max(e);
            self.zeroed.remove(&s);
        }
        NativeError::check_limit(
            "runs of zeroed blocks",
            self.zeroed.len() as u64 + 1,
            MAX_ZERO_RUNS as u64,
        )?;
        self.zeroed.insert(start, end);
        Ok(())
    }

    /// The run of zeroed blocks holding `block`, if any.
    fn zero_run_of(&self, block: u64) -> Option<(u64, u64)> {
        self.zeroed
            .range(..=block)
            .next_back()
            .filter(|(_, &end)| block < end)
            .map(|(&s, &e)| (s, e))
    }

    /// Takes `block` out of its zeroed run (it is about to hold data).
    fn unzero(&mut self, block: u64) {
        if let Some((start, end)) = self.zero_run_of(block) {
            self.zeroed.remove(&start);
            if start < block {
                self.zeroed.insert(start, block);
            }
            if block + 1 < end {
                self.zeroed.insert(block + 1, end);
            }
        }
    }

    /// Fills `buf` from volume offset `offset`: the volume's bytes with the edits laid
    /// over them.
    pub fn read_at(&self, buf: &mut [u8], offset: u64, structure: &'static str) -> Result<()> {
        self.volume.read_at(buf, offset, structure)?;
        if self.is_empty() || buf.is_empty() {
            return Ok(());
        }
        // Inside the volume (checked by the read above), so no overflow below.
        let size = u64::from(self.block_size);
        let end = offset + buf.len() as u64;
        let (first, last) = (offset / size, (end - 1) / size);
        let before = self.zero_run_of(first).map(|(s, _)| s).unwrap_or(first);
        for (&start, &stop) in self.zeroed.range(before..=last) {
            let from = offset.max(start * size);
            let to = end.min(stop.saturating_mul(size));
            if from < to {
                buf[(from - offset) as usize..(to - offset) as usize].fill(0);
            }
        }
        for (&block, data) in self.blocks.range(offset / size..=(end - 1) / size) {
            let block_start = block * size;
            let from = offset.max(block_start);
            let to = end.min(block_start + size);
            buf[(from - offset) as usize..(to - offset) as usize]
                .copy_from_slice(&data[(from - block_start) as usize..(to - block_start) as usize]);
        }
        Ok(())
    }

    /// Reads `len` bytes at `offset` (bounded by the caller) into a new buffer.
    pub fn read_vec(&self, offset: u64, len: usize, structure: &'static str) -> Result<Vec<u8>> {
        let mut buf = vec![0; len];
        self.read_at(&mut buf, offset, structure)?;
        Ok(buf)
    }

    /// Replaces the bytes at volume offset `offset` with `data` (in memory only).
    pub fn write_at(&mut self, offset: u64, data: &[u8], structure: &'static str) -> Result<()> {
        let size = u64::from(self.block_size);
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|&end| end <= self.volume.len())
            .ok_or_else(|| {
                NativeError::malformed(
                    structure,
                    offset,
                    format!("a write of {} bytes leaves the volume", data.len()),
                )
            })?;
        let mut at = offset;
        while at < end {
            let block = at / size;
            let block_start = block * size;
            let to = end.min(block_start + size);
            if !self.blocks.contains_key(&block) {
                let bytes = (self.blocks.len() as u64 + 1).saturating_mul(size);
                NativeError::check_limit("edited bytes in memory", bytes, MAX_OVERLAY_BYTES)?;
                let current = self.read_vec(block_start, size as usize, structure)?;
                self.unzero(block);
                self.blocks.insert(block, current);
            }
            if let Some(content) = self.blocks.get_mut(&block) {
                content[(at - block_start) as usize..(to - block_start) as usize]
                    .copy_from_slice(&data[(at - offset) as usize..(to - offset) as usize]);
            }
            at = to;
        }
        Ok(())
    }

    /// The edits as writes to the virtual disk, leaving out blocks whose new content
    /// equals what the disk holds (zeroed blocks: parts already zero). On a volume made
    /// of several ranges (an LV) each block goes where the volume maps it.
    pub fn disk_writes(&self, disk: &dyn VirtualDisk) -> Result<DiskWrites> {
        Ok(DiskWrites {
            data: self.data_writes(disk)?,
            zeros: self.zero_writes(disk)?,
        })
    }

    /// The runs of zeroed blocks as runs of the disk that are not zero yet, sorted.
    fn zero_writes(&self, disk: &dyn VirtualDisk) -> Result<Vec<ZeroRun>> {
        let size = u64::from(self.block_size);
        let mut runs: Vec<ZeroRun> = Vec::new();
        let mut buf = Vec::new();
        for (&start, &end) in &self.zeroed {
            let ranges =
                self.volume
                    .disk_ranges(start * size, (end - start) * size, "zeroed blocks")?;
            for (at, len) in ranges {
                let mut done = 0;
                while done < len {
                    let take = (len - done).min(ZERO_SCAN);
                    buf.resize(take as usize, 0);
                    disk.read_at(&mut buf, at + done)?;
                    // Block by block: only blocks holding something are written.
                    for (i, chunk) in buf.chunks(size as usize).enumerate() {
                        if chunk.iter().all(|&b| b == 0) {
                            continue;
                        }
                        let from = at + done + (i as u64) * size;
                        let len = chunk.len() as u64;
                        match runs.last_mut() {
                            Some((s, l)) if *s + *l == from => *l += len,
                            _ => runs.push((from, len)),
                        }
                    }
                    done += take;
                }
            }
        }
        runs.sort_unstable_by_key(|(at, _)| *at);
        Ok(runs)
    }

    fn data_writes(&self, disk: &dyn VirtualDisk) -> Result<Vec<(u64, Vec<u8>)>> {
        let size = u64::from(self.block_size);
        let mut writes = Vec::with_capacity(self.blocks.len());
        let mut current = Vec::new();
        for (&block, data) in &self.blocks {
            // A block of an LV may straddle two segments: one write per disk run.
            let mut done = 0usize;
            for (at, len) in self
                .volume
                .disk_ranges(block * size, size, "edited block")?
            {
                // len <= block size, so these slices are inside `data`.
                let new = &data[done..done + len as usize];
                done += len as usize;
                current.resize(new.len(), 0);
                disk.read_at(&mut current, at)?;
                if current != new {
                    writes.push((at, new.to_vec()));
                }
            }
        }
        writes.sort_unstable_by_key(|(at, _)| *at);
        Ok(writes)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::disk::{MemorySource, RawImage};

    fn overlay() -> (Overlay, Arc<dyn VirtualDisk>) {
        let bytes: Vec<u8> = (0..8192u32).map(|i| i as u8).collect();
        let source = Arc::new(MemorySource::new(bytes, "mem.img"));
        let disk: Arc<dyn VirtualDisk> = Arc::new(RawImage::new(source, Path::new("mem.img")));
        let volume = Volume::range(disk.clone(), 1024, 4096).unwrap();
        (Overlay::new(volume, 1024), disk)
    }

    #[test]
    fn reads_see_edits_across_block_boundaries() {
        let (mut overlay, disk) = overlay();
        overlay.write_at(1020, &[0xaa; 8], "test").unwrap();
        let mut buf = [0u8; 12];
        overlay.read_at(&mut buf, 1018, "test").unwrap();
        assert_eq!(buf[..2], [(1024 + 1018) as u8, (1024 + 1019) as u8]);
        assert_eq!(buf[2..10], [0xaa; 8]);
        assert_eq!(buf[10], (1024 + 1028) as u8);
        assert_eq!(overlay.edited_blocks(), 2);
        let writes = overlay.disk_writes(disk.as_ref()).unwrap().data;
        assert_eq!(writes.len(), 2);
        assert_eq!((writes[0].0, writes[1].0), (1024, 2048));
        assert_eq!(writes[0].1[1020..], [0xaa; 4]);
        assert_eq!(writes[1].1[..4], [0xaa; 4]);
        assert!(overlay.write_at(4090, &[0; 7], "test").is_err());
        assert!(overlay.write_at(u64::MAX, &[0; 7], "test").is_err());
    }

    #[test]
    fn edits_of_a_volume_made_of_ranges_go_where_it_maps_them() {
        let (_, disk) = overlay();
        // Volume bytes [0, 1536) are disk [6144, 7680), then [7680, ..) is disk [512, 2560).
        let volume = Volume::mapped(disk.clone(), &[(6144, 1536), (512, 2048)]).unwrap();
        let mut overlay = Overlay::new(volume, 1024);
        overlay.write_at(1020, &[0xaa; 600], "test").unwrap();
        assert_eq!(overlay.read_vec(1020, 600, "test").unwrap(), [0xaa; 600]);
        let writes = overlay.disk_writes(disk.as_ref()).unwrap().data;
        let runs: Vec<(u64, usize)> = writes.iter().map(|(at, data)| (*at, data.len())).collect();
        // Block 0 whole in the first range; block 1 straddles: 512 bytes at its end,
        // 512 at the start of the second range.
        assert_eq!(runs, [(512, 512), (6144, 1024), (7168, 512)]);
        assert_eq!(writes[1].1[1020..], [0xaa; 4]);
        assert_eq!(writes[2].1[..], [0xaa; 512]);
        assert_eq!(writes[0].1[..84], [0xaa; 84]);
        assert_eq!(writes[0].1[84], (512 + 84) as u8);
    }

    #[test]
    fn unchanged_blocks_are_not_written() {
        let (mut overlay, disk) = overlay();
        let same = overlay.read_vec(100, 10, "test").unwrap();
        overlay.write_at(100, &same, "test").unwrap();
        assert_eq!(overlay.edited_blocks(), 1);
        assert!(overlay.disk_writes(disk.as_ref()).unwrap().is_empty());
        overlay.discard();
        assert!(overlay.is_empty());
    }

    #[test]
    fn zeroed_runs_merge_read_as_zeros_and_give_way_to_writes() {
        let (mut overlay, disk) = overlay();
        overlay.write_at(1024, &[0xbb; 10], "test").unwrap();
        overlay.zero_blocks(1, 1).unwrap();
        overlay.zero_blocks(0, 1).unwrap();
        overlay.zero_blocks(2, 0).unwrap();
        assert_eq!(overlay.zeroed_blocks(), 2);
        assert_eq!(
            overlay.edited_blocks(),
            0,
            "the zeroed block's edit is dropped"
        );
        assert_eq!(overlay.read_vec(1000, 100, "test").unwrap(), [0; 100]);
        // Block 2 is untouched: the volume's bytes (volume byte 2048 is disk 3072).
        assert_eq!(
            overlay.read_vec(2047, 2, "test").unwrap(),
            [0, 3072u32 as u8]
        );
        // A write into a zeroed block starts from zeros and splits the run.
        overlay.write_at(1030, &[7; 4], "test").unwrap();
        assert_eq!(overlay.zeroed_blocks(), 1);
        let block = overlay.read_vec(1024, 1024, "test").unwrap();
        assert_eq!(block[6..10], [7; 4]);
        assert!(block[..6].iter().chain(&block[10..]).all(|&b| b == 0));
        let writes = overlay.disk_writes(disk.as_ref()).unwrap();
        // Block 0 of the volume is disk [1024, 2048): written as a run of zeros.
        assert_eq!(writes.zeros, [(1024, 1024)]);
        assert_eq!(writes.data.len(), 1);
        assert_eq!(writes.data[0].0, 2048);
        assert_eq!(writes.zero_bytes(), 1024);
    }

    #[test]
    fn zeroed_blocks_already_zero_on_the_disk_are_not_written() {
        let source = Arc::new(MemorySource::new(vec![0u8; 8192], "zero.img"));
        let disk: Arc<dyn VirtualDisk> = Arc::new(RawImage::new(source, Path::new("zero.img")));
        let mut overlay = Overlay::new(Volume::whole(disk.clone()), 1024);
        overlay.zero_blocks(0, 8).unwrap();
        assert!(overlay.disk_writes(disk.as_ref()).unwrap().is_empty());
        assert!(!overlay.is_empty());
    }
}
