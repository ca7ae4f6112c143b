//! The native backend's partition-table reader against sfdisk: disks built with sfdisk
//! (MBR with extended/logical partitions) and sgdisk (GPT) read natively, as raw and
//! as qcow2, must list exactly what `sfdisk --json` lists; damaged GPT headers fall
//! back to the backup like sfdisk does; hostile tables (an EBR loop, a huge entry
//! array) are refused quickly.

mod native_support;

use std::path::Path;

use imgferry::guest::native::crc::crc32;
use imgferry::guest::native::partition::{
    read_partition_table, PartitionTable, PartitionType, Scheme,
};
use imgferry::guest::native::NativeError;
use native_support::{arg, blank_disk, fixture, open_disk, run, run_stdin, to_raw};
use serde_json::Value;

/// One partition as both sides can describe it.
#[derive(Debug, PartialEq, Eq)]
struct Row {
    number: u32,
    start: u64,
    size: u64,
    kind: String,
    uuid: Option<String>,
    name: Option<String>,
    bootable: bool,
}

fn native_rows(table: &PartitionTable) -> Vec<Row> {
    table
        .partitions
        .iter()
        .map(|p| Row {
            number: p.number,
            start: p.start_sector,
            size: p.sectors,
            kind: match &p.kind {
                PartitionType::Mbr(byte) => format!("{byte:x}"),
                PartitionType::Gpt(guid) => guid.clone(),
            },
            uuid: p.uuid.clone(),
            name: p.name.clone(),
            bootable: p.bootable,
        })
        .collect()
}

/// sfdisk's view: the table JSON and its rows.
fn sfdisk_table(image: &Path) -> (Value, Vec<Row>) {
    let json: Value = serde_json::from_str(&run("sfdisk", &["--json", arg(image)])).unwrap();
    let table = json["partitiontable"].clone();
    let rows = table["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let node = p["node"].as_str().unwrap();
            let digits = node.len() - node.chars().rev().take_while(char::is_ascii_digit).count();
            let text = |key: &str| p[key].as_str().map(str::to_owned);
            Row {
                number: node[digits..].parse().unwrap(),
                start: p["start"].as_u64().unwrap(),
                size: p["size"].as_u64().unwrap(),
                kind: text("type").unwrap().to_lowercase(),
                uuid: text("uuid"),
                name: text("name"),
                bootable: p["bootable"].as_bool().unwrap_or(false)
                    || text("attrs").is_some_and(|a| a.contains("LegacyBIOSBootable")),
            }
        })
        .collect();
    (table, rows)
}

fn lower(mut rows: Vec<Row>) -> Vec<Row> {
    for row in &mut rows {
        row.kind = row.kind.to_lowercase();
    }
    rows
}

/// Reads `image` natively (raw, then as a qcow2 copy) and checks both against sfdisk.
fn assert_matches_sfdisk(image: &Path) -> PartitionTable {
    let table = read_partition_table(open_disk(image).as_ref()).unwrap();
    let (sfdisk, expected) = sfdisk_table(image);
    assert_eq!(lower(native_rows(&table)), expected, "{}", image.display());
    match &table.scheme {
        Scheme::Mbr { disk_id } => {
            assert_eq!(sfdisk["label"], "dos");
            assert_eq!(format!("0x{disk_id:08x}"), sfdisk["id"].as_str().unwrap());
        }
        Scheme::Gpt(info) => {
            assert_eq!(sfdisk["label"], "gpt");
            assert_eq!(info.disk_guid, sfdisk["id"].as_str().unwrap());
            assert_eq!(info.first_usable_lba, sfdisk["firstlba"].as_u64().unwrap());
            assert_eq!(info.last_usable_lba, sfdisk["lastlba"].as_u64().unwrap());
        }
        Scheme::WholeDisk => panic!("{}: no table found", image.display()),
    }
    let qcow2 = image.with_extension("qcow2");
    run(
        "qemu-img",
        &["convert", "-O", "qcow2", arg(image), arg(&qcow2)],
    );
    let through_qcow2 = read_partition_table(open_disk(&qcow2).as_ref()).unwrap();
    assert_eq!(through_qcow2, table, "qcow2 copy of {}", image.display());
    table
}

fn sfdisk_script(image: &Path, script: &str) {
    run_stdin("sfdisk", &["-q", "--no-reread", arg(image)], Some(script));
}

#[test]
fn mbr_primaries_and_logical_partitions_match_sfdisk() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("mbr.img");
    blank_disk(&image, 96 << 20);
    sfdisk_script(
        &image,
        "label: dos\nlabel-id: 0x1234abcd\n,8M,83,*\n,8M,82\n,8M,c\n,,5\n,4M,83\n,4M,8e\n,,83\n",
    );
    let table = assert_matches_sfdisk(&image);
    let numbers: Vec<u32> = table.partitions.iter().map(|p| p.number).collect();
    assert_eq!(numbers, [1, 2, 3, 4, 5, 6, 7]);
}

#[test]
fn mbr_extended_in_slot_two_with_empty_slots_matches_sfdisk() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("gaps.img");
    blank_disk(&image, 64 << 20);
    let script = "label: dos\n\
                  mbr.img1 : start=2048, size=8192, type=83\n\
                  mbr.img2 : start=16384, size=100000, type=f\n\
                  mbr.img5 : start=18432, size=4096, type=83\n\
                  mbr.img6 : start=24576, size=8192, type=7\n";
    sfdisk_script(&image, script);
    let table = assert_matches_sfdisk(&image);
    let numbers: Vec<u32> = table.partitions.iter().map(|p| p.number).collect();
    assert_eq!(numbers, [1, 2, 5, 6]);
}

fn make_gpt(image: &Path) {
    blank_disk(image, 64 << 20);
    run(
        "sgdisk",
        &[
            "-n",
            "1:2048:+1M",
            "-t",
            "1:ef02",
            "-c",
            "1:bios",
            "-n",
            "2:0:+8M",
            "-t",
            "2:ef00",
            "-c",
            "2:EFI System",
            "-n",
            "5:0:+8M",
            "-t",
            "5:8300",
            "-c",
            "5:rööt",
            "-A",
            "5:set:2",
            "-n",
            "128:0:+4M",
            "-t",
            "128:8e00",
            arg(image),
        ],
    );
}

#[test]
fn gpt_matches_sfdisk_and_both_headers_are_valid() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("gpt.img");
    make_gpt(&image);
    let table = assert_matches_sfdisk(&image);
    let Scheme::Gpt(info) = &table.scheme else {
        panic!("not GPT")
    };
    assert!(info.primary_valid && info.backup_valid, "{info:?}");
    assert_eq!(table.partitions.last().unwrap().number, 128);
}

fn patch(image: &Path, offset: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new().write(true).open(image).unwrap();
    file.write_all_at(bytes, offset).unwrap();
}

fn read(image: &Path, offset: u64, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0; len];
    std::fs::File::open(image)
        .unwrap()
        .read_exact_at(&mut buf, offset)
        .unwrap();
    buf
}

#[test]
fn gpt_with_a_damaged_primary_falls_back_to_the_backup_like_sfdisk() {
    let dir = tempfile::tempdir().unwrap();
    for (label, offset) in [("header", 512 + 60), ("entries", 1024 + 3)] {
        let image = dir.path().join(format!("damaged-{label}.img"));
        make_gpt(&image);
        let intact = read_partition_table(open_disk(&image).as_ref()).unwrap();
        let byte = read(&image, offset, 1)[0];
        patch(&image, offset, &[byte ^ 0x40]);
        let table = assert_matches_sfdisk(&image);
        let Scheme::Gpt(info) = &table.scheme else {
            panic!("not GPT")
        };
        assert!(
            !info.primary_valid && info.backup_valid,
            "{label}: {info:?}"
        );
        assert_eq!(table.partitions, intact.partitions, "{label}");
    }
}

#[test]
fn gpt_with_both_headers_damaged_is_refused_with_the_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("broken.img");
    make_gpt(&image);
    let last = (64 << 20) - 512;
    // Flip bits rather than write a constant: the byte is part of the random
    // disk GUID and may already hold any given value.
    for offset in [512 + 60, last + 60] {
        let byte = read(&image, offset, 1)[0];
        patch(&image, offset, &[byte ^ 0x40]);
    }
    let err = read_partition_table(open_disk(&image).as_ref()).unwrap_err();
    assert!(
        matches!(
            err,
            NativeError::Checksum {
                structure: "GPT header",
                offset: 512,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn gpt_claiming_a_huge_entry_array_is_refused_before_reading_it() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("huge.img");
    make_gpt(&image);
    for header in [512, (64 << 20) - 512] {
        let mut sector = read(&image, header, 92);
        sector[80..84].copy_from_slice(&u32::MAX.to_le_bytes());
        sector[16..20].fill(0);
        let crc = crc32(&sector);
        sector[16..20].copy_from_slice(&crc.to_le_bytes());
        patch(&image, header, &sector);
    }
    let err = read_partition_table(open_disk(&image).as_ref()).unwrap_err();
    assert!(
        matches!(
            err,
            NativeError::Limit {
                structure: "GPT entry array bytes",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn an_ebr_chain_that_loops_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("loop.img");
    blank_disk(&image, 64 << 20);
    sfdisk_script(&image, "label: dos\n,8M,83\n,,5\n,4M,83\n,4M,83\n");
    // Point the second EBR's link (entry 1) back at the first EBR: start 0 relative
    // to the extended partition, type 0x05, one sector so the entry counts as used.
    let (_, rows) = sfdisk_table(&image);
    let extended_start = rows.iter().find(|r| r.kind == "5").unwrap().start;
    let first_logical = rows.iter().find(|r| r.number == 5).unwrap().start;
    let second_ebr = {
        let ebr = read(&image, extended_start * 512, 512);
        let link = u32::from_le_bytes(ebr[446 + 16 + 8..446 + 16 + 12].try_into().unwrap());
        extended_start + u64::from(link)
    };
    assert!(first_logical > extended_start);
    let link_field = second_ebr * 512 + 446 + 16;
    patch(
        &image,
        link_field,
        &[0, 0, 0, 0, 0x05, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0],
    );
    let err = read_partition_table(open_disk(&image).as_ref()).unwrap_err();
    assert!(err.to_string().contains("loops"), "{err}");
}

#[test]
fn whole_disk_filesystems_and_blank_disks_have_no_table() {
    let dir = tempfile::tempdir().unwrap();
    let blank = dir.path().join("blank.img");
    blank_disk(&blank, 8 << 20);
    let ext4 = dir.path().join("ext4.img");
    blank_disk(&ext4, 8 << 20);
    run("mke2fs", &["-q", "-F", "-t", "ext4", arg(&ext4)]);
    let tiny = dir.path().join("tiny.img");
    blank_disk(&tiny, 100);
    for image in [blank, ext4, tiny] {
        let table = read_partition_table(open_disk(&image).as_ref()).unwrap();
        assert_eq!(table.scheme, Scheme::WholeDisk, "{}", image.display());
        assert!(table.partitions.is_empty());
    }
}

#[test]
fn debian_and_ubuntu_fixtures_match_sfdisk() {
    let dir = tempfile::tempdir().unwrap();
    for (name, scheme, numbers) in [
        ("debian", "dos", &[1, 2][..]),
        ("ubuntu", "gpt", &[1, 14, 15][..]),
    ] {
        let qcow2 = fixture(name);
        let raw = dir.path().join(format!("{name}.raw"));
        to_raw(&qcow2, &raw);
        let native = read_partition_table(open_disk(&qcow2).as_ref()).unwrap();
        let (sfdisk, expected) = sfdisk_table(&raw);
        assert_eq!(sfdisk["label"], scheme);
        assert_eq!(lower(native_rows(&native)), expected, "{name}");
        let found: Vec<u32> = native.partitions.iter().map(|p| p.number).collect();
        assert_eq!(found, numbers, "{name}");
    }
}
