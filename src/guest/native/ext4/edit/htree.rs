//! Indexed (htree) directories: the name hash ext4 orders them by (legacy, half-MD4
//! and TEA, signed or unsigned characters) and the descent from the dx root through
//! interior nodes to the leaf block whose hash range holds a name — where a new entry
//! must go for the index to stay valid.
//!
//! Owns the dx root/node layouts as far as the descent reads them, and the hash. Must
//! not: split leaves or grow the index (a full leaf is [`NativeError::Unsupported`]).

use super::super::blockmap;
use super::super::inode::Inode;
use super::super::superblock::incompat;
use super::super::Ext4;
use crate::guest::native::bytes::{byte, le16, le32};
use crate::guest::native::error::{NativeError, Result};

/// `s_flags` bit: names hash with unsigned characters.
const UNSIGNED_HASH: u32 = 0x2;
const DEFAULT_SEED: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];

/// A directory hash algorithm (`dx_root_info.hash_version`, with the superblock's
/// signedness applied).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashKind {
    pub version: u8,
    pub unsigned: bool,
}

/// The major hash of `name` (the one the index orders by).
pub fn name_hash(name: &[u8], kind: HashKind, seed: [u32; 4]) -> Result<u32> {
    let chars = |c: u8| -> u32 {
        if kind.unsigned {
            u32::from(c)
        } else {
            c as i8 as i32 as u32
        }
    };
    let mut buf = if seed.iter().any(|&s| s != 0) {
        seed
    } else {
        DEFAULT_SEED
    };
    let hash = match kind.version {
        0 => legacy(name, chars),
        1 => {
            for chunk in name.chunks(32) {
                let input = hash_input::<8>(chunk, name.len() - offset_of(name, chunk), chars);
                half_md4(&mut buf, &input);
            }
            buf[1]
        }
        2 => {
            for chunk in name.chunks(16) {
                let input = hash_input::<4>(chunk, name.len() - offset_of(name, chunk), chars);
                tea(&mut buf, &input);
            }
            buf[0]
        }
        other => {
            return Err(NativeError::unsupported(
                "ext4 htree",
                format!("hash version {other} (casefold's siphash or unknown)"),
            ))
        }
    };
    let hash = hash & !1;
    Ok(if hash == 0x7fff_ffff << 1 {
        0x7fff_fffe << 1
    } else {
        hash
    })
}

fn offset_of(whole: &[u8], part: &[u8]) -> usize {
    part.as_ptr() as usize - whole.as_ptr() as usize
}

/// The kernel's `str2hashbuf`: `chunk` (the next bytes of the name; `remaining` bytes
/// of the name are left from its start on) packed into `N` words.
fn hash_input<const N: usize>(
    chunk: &[u8],
    remaining: usize,
    chars: impl Fn(u8) -> u32,
) -> [u32; N] {
    let len = remaining as u32;
    let mut pad = len | len << 8;
    pad |= pad << 16;
    let mut out = [pad; N];
    let mut val = pad;
    let mut word = 0;
    for (i, &c) in chunk.iter().take(N * 4).enumerate() {
        val = chars(c).wrapping_add(val << 8);
        if i % 4 == 3 {
            out[word] = val;
            word += 1;
            val = pad;
        }
    }
    if word < N {
        out[word] = val;
    }
    out
}

fn legacy(name: &[u8], chars: impl Fn(u8) -> u32) -> u32 {
    let (mut hash0, mut hash1) = (0x12a3_fe2du32, 0x37ab_e8f9u32);
    for &c in name {
        let mut hash = hash1.wrapping_add(hash0 ^ chars(c).wrapping_mul(7_152_373));
        if hash & 0x8000_0000 != 0 {
            hash = hash.wrapping_sub(0x7fff_ffff);
        }
        hash1 = hash0;
        hash0 = hash;
    }
    hash0 << 1
}

fn half_md4(buf: &mut [u32; 4], input: &[u32; 8]) {
    const K2: u32 = 0o13240474631;
    const K3: u32 = 0o15666365641;
    fn f(x: u32, y: u32, z: u32) -> u32 {
        z ^ (x & (y ^ z))
    }
    fn g(x: u32, y: u32, z: u32) -> u32 {
        (x & y).wrapping_add((x ^ y) & z)
    }
    fn h(x: u32, y: u32, z: u32) -> u32 {
        x ^ y ^ z
    }
    /// Four steps of one round: `words` and `shifts` for a, d, c, b in turn.
    fn four(fun: fn(u32, u32, u32) -> u32, v: &mut [u32; 4], words: [u32; 4], shifts: [u32; 4]) {
        let [a, b, c, d] = v;
        *a = a
            .wrapping_add(fun(*b, *c, *d))
            .wrapping_add(words[0])
            .rotate_left(shifts[0]);
        *d = d
            .wrapping_add(fun(*a, *b, *c))
            .wrapping_add(words[1])
            .rotate_left(shifts[1]);
        *c = c
            .wrapping_add(fun(*d, *a, *b))
            .wrapping_add(words[2])
            .rotate_left(shifts[2]);
        *b = b
            .wrapping_add(fun(*c, *d, *a))
            .wrapping_add(words[3])
            .rotate_left(shifts[3]);
    }
    let x = |i: usize, k: u32| input[i].wrapping_add(k);
    let mut v = *buf;
    four(
        f,
        &mut v,
        [x(0, 0), x(1, 0), x(2, 0), x(3, 0)],
        [3, 7, 11, 19],
    );
    four(
        f,
        &mut v,
        [x(4, 0), x(5, 0), x(6, 0), x(7, 0)],
        [3, 7, 11, 19],
    );
    four(
        g,
        &mut v,
        [x(1, K2), x(3, K2), x(5, K2), x(7, K2)],
        [3, 5, 9, 13],
    );
    four(
        g,
        &mut v,
        [x(0, K2), x(2, K2), x(4, K2), x(6, K2)],
        [3, 5, 9, 13],
    );
    four(
        h,
        &mut v,
        [x(3, K3), x(7, K3), x(2, K3), x(6, K3)],
        [3, 9, 11, 15],
    );
    four(
        h,
        &mut v,
        [x(1, K3), x(5, K3), x(0, K3), x(4, K3)],
        [3, 9, 11, 15],
    );
    for (word, add) in buf.iter_mut().zip(v) {
        *word = word.wrapping_add(add);
    }
}

fn tea(buf: &mut [u32; 4], input: &[u32; 4]) {
    let (mut b0, mut b1) = (buf[0], buf[1]);
    let [a, b, c, d] = *input;
    let mut sum = 0u32;
    for _ in 0..16 {
        sum = sum.wrapping_add(0x9e37_79b9);
        b0 = b0.wrapping_add(
            (b1 << 4).wrapping_add(a) ^ b1.wrapping_add(sum) ^ (b1 >> 5).wrapping_add(b),
        );
        b1 = b1.wrapping_add(
            (b0 << 4).wrapping_add(c) ^ b0.wrapping_add(sum) ^ (b0 >> 5).wrapping_add(d),
        );
    }
    buf[0] = buf[0].wrapping_add(b0);
    buf[1] = buf[1].wrapping_add(b1);
}

impl Ext4 {
    /// The hash seed and the signedness of names from the superblock.
    fn hash_setup(&self) -> Result<([u32; 4], bool)> {
        let raw = self.raw_superblock()?;
        let seed = [0xec, 0xf0, 0xf4, 0xf8].map(|at| le32(&raw, at));
        Ok((seed, le32(&raw, 0x160) & UNSIGNED_HASH != 0))
    }

    /// The logical block of indexed directory `dir` whose leaf must hold `name`.
    pub fn htree_leaf(&self, dir: &Inode, name: &[u8]) -> Result<u64> {
        let block_size = u64::from(self.sb.block_size);
        let blocks = dir.size.div_ceil(block_size);
        let runs = blockmap::map(self, dir, blocks)?;
        let physical = |logical: u64| {
            runs.iter()
                .find(|r| logical >= r.logical && logical < r.logical + r.len)
                .map(|r| r.physical + (logical - r.logical))
                .ok_or_else(|| {
                    NativeError::malformed(
                        "ext4 htree",
                        0,
                        format!("directory {}: block {logical} is a hole", dir.number),
                    )
                })
        };
        let root = self.read_block(physical(0)?, "ext4 htree root")?;
        let bad = |detail: String| {
            NativeError::malformed(
                "ext4 htree",
                0,
                format!("directory {}: {detail}", dir.number),
            )
        };
        if byte(&root, 29) != 8 || le32(&root, 24) != 0 {
            return Err(bad("bad dx root info".into()));
        }
        let levels = byte(&root, 30);
        let max_levels = if self.sb.has_incompat(incompat::LARGEDIR) {
            3
        } else {
            2
        };
        if levels >= max_levels {
            return Err(bad(format!("{levels} index levels")));
        }
        let (seed, unsigned) = self.hash_setup()?;
        let kind = HashKind {
            version: byte(&root, 28),
            unsigned,
        };
        let hash = name_hash(name, kind, seed)?;
        let mut node = root;
        let mut at = 32usize;
        for level in 0..=levels {
            let (limit, count) = (
                usize::from(le16(&node, at)),
                usize::from(le16(&node, at + 2)),
            );
            if count == 0 || count > limit || at + limit * 8 > node.len() {
                return Err(bad(format!("count {count}, limit {limit}")));
            }
            // Entry 0 holds the block with an implied hash of 0; entry i: (hash, block).
            let mut chosen = le32(&node, at + 4);
            for i in 1..count {
                let entry = at + i * 8;
                if le32(&node, entry) > hash {
                    break;
                }
                chosen = le32(&node, entry + 4);
            }
            let logical = u64::from(chosen & 0x0fff_ffff);
            if logical == 0 || logical >= blocks {
                return Err(bad(format!("index points at block {logical} of {blocks}")));
            }
            if level == levels {
                return Ok(logical);
            }
            node = self.read_block(physical(logical)?, "ext4 htree node")?;
            at = 8;
        }
        Err(bad("no leaf".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_match_e2fsprogs() {
        // Printed by debugfs 1.47.0 `dx_hash -h VERSION NAME` (default seed).
        let long = "a-much-longer-file-name-that-spans-two-chunks.conf-and-more-than-32";
        let cafe = "caf\u{e9}";
        let cases = [
            (0, "hostname", 0xd5dc_69ae),
            (1, "hostname", 0xa205_0766),
            (2, "hostname", 0x741d_1a58),
            (0, long, 0x487a_a6f2),
            (1, long, 0xd474_c0d4),
            (2, long, 0xcd9f_6ef4),
            (0, cafe, 0x96ca_5a2c),
            (1, cafe, 0xfb9c_5e5c),
            (2, cafe, 0x1058_42ea),
            (3, cafe, 0x6dde_4230),
            (4, cafe, 0x9d72_aed6),
            (5, cafe, 0x6621_f032),
        ];
        for (version, name, expected) in cases {
            let kind = HashKind {
                version: version % 3,
                unsigned: version >= 3,
            };
            let hash = name_hash(name.as_bytes(), kind, [0; 4]).unwrap();
            assert_eq!(hash, expected, "{version} {name}");
        }
        // -s 12345678-9abc-def0-1234-56789abcdef0: the UUID's bytes as four words.
        let seed = [0x7856_3412, 0xf0de_bc9a, 0x7856_3412, 0xf0de_bc9a];
        let kind = HashKind {
            version: 1,
            unsigned: false,
        };
        assert_eq!(name_hash(b"hostname", kind, seed).unwrap(), 0xe62b_33c8);
        let siphash = HashKind {
            version: 6,
            unsigned: false,
        };
        assert!(name_hash(b"x", siphash, seed).is_err());
    }
}
