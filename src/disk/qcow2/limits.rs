//! Named limits that every number read from a qcow2 file is checked against.
//!
//! Each comes from the qcow2 specification or from QEMU's own implementation limits,
//! so an image QEMU accepts is accepted here and a hostile one cannot make us allocate
//! or loop without bound.

/// Smallest cluster: 512 bytes (spec: cluster_bits >= 9).
pub const MIN_CLUSTER_BITS: u32 = 9;
/// Largest cluster QEMU creates and opens: 2 MiB.
pub const MAX_CLUSTER_BITS: u32 = 21;
/// Extended L2 entries need clusters of at least 16 KiB (spec).
pub const MIN_EXTENDED_L2_CLUSTER_BITS: u32 = 14;
/// QEMU's cap on the L1 table (32 MiB = 4 Mi entries); with 2 MiB clusters that maps
/// 2 PiB, so it also bounds the virtual size any real image can have.
pub const MAX_L1_BYTES: u64 = 32 << 20;
/// QEMU's cap on the refcount table (8 MiB).
pub const MAX_REFCOUNT_TABLE_BYTES: u64 = 8 << 20;
/// Largest refcount width: 2^6 = 64 bits (spec: refcount_order <= 6).
pub const MAX_REFCOUNT_ORDER: u32 = 6;
/// QEMU refuses backing file names longer than 1023 bytes.
pub const MAX_BACKING_FILE_NAME: u32 = 1023;
/// QEMU's cap on internal snapshots.
pub const MAX_SNAPSHOTS: u32 = 65536;
/// Fixed part of a version 2 header.
pub const V2_HEADER_LEN: u32 = 72;
/// Fixed part of a version 3 header, up to and including `header_length`.
pub const V3_MIN_HEADER_LEN: u32 = 104;
/// A v3 header with the compression type field, padded to 8 bytes.
pub const V3_HEADER_WITH_COMPRESSION_LEN: u32 = 112;
/// Largest virtual size accepted: keeps every guest offset + cluster size inside i64,
/// as QEMU's block layer requires (`BDRV_MAX_LENGTH` is just under 2^63).
pub const MAX_VIRTUAL_SIZE: u64 = 1 << 62;
/// Host offsets in L1/L2/refcount entries occupy bits 9..=55 (spec).
pub const HOST_OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
/// QEMU's cap on the whole snapshot table (`QCOW_MAX_SNAPSHOTS_SIZE`, 64 MiB).
pub const MAX_SNAPSHOT_TABLE_BYTES: u64 = 64 << 20;
/// QEMU's cap on the extra data of one snapshot table entry.
pub const MAX_SNAPSHOT_EXTRA_DATA: u32 = 1024;
/// Extra data every version 3 snapshot must carry (64-bit VM state size, disk size).
pub const V3_MIN_SNAPSHOT_EXTRA_DATA: u32 = 16;
/// QEMU's cap on persistent bitmaps in one image.
pub const MAX_BITMAPS: u32 = 65535;
/// QEMU's cap on the bitmap directory (1 KiB per bitmap at the maximum count).
pub const MAX_BITMAP_DIRECTORY_BYTES: u64 = 1024 * MAX_BITMAPS as u64;
/// QEMU's cap on a bitmap name.
pub const MAX_BITMAP_NAME: u16 = 1023;
/// Bitmap granularities QEMU supports: 512 bytes to 2 GiB per bit.
pub const MIN_BITMAP_GRANULARITY_BITS: u8 = 9;
pub const MAX_BITMAP_GRANULARITY_BITS: u8 = 31;
/// QEMU's cap on the entries of one bitmap table (`BME_MAX_TABLE_SIZE`).
pub const MAX_BITMAP_TABLE_ENTRIES: u32 = 0x800_0000;
/// Host clusters `check` tracks at most: it keeps 3 bytes per cluster of the file (a
/// computed refcount and what uses the cluster), so this caps its memory at 192 MiB
/// (a 4 TiB file with 64 KiB clusters, 32 GiB with 512-byte clusters).
pub const MAX_CHECKED_CLUSTERS: u64 = 1 << 26;
