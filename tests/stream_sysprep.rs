//! One pass from Glance, at the library level: a sysprep fixture in c1's Glance is read
//! through HTTP ranges (`transfer::remote`) by the native guest backend, its edits are
//! planned into an output qcow2 (`disk::stream`), and the output is produced from ONE
//! `GET /file` whose SHA-512 is checked against the record's `os_hash_value`. The result
//! must equal, by `qemu-img compare`, a local copy with the same edits committed in
//! place (the staged pipeline's commit), and list the same guest files as an independent
//! staged run of the native backend. Records requests and bytes of the metadata
//! phase (see docs/design/streaming.md).

mod common;
mod sysprep_support;

use std::collections::BTreeSet;
use std::io::{BufWriter, Read};
use std::path::Path;
use std::sync::Arc;

use common::dev_cloud::dev_cloud;
use common::image_guard::{create_image, ImageGuard};
use imgferry::cloud::config::{CloudCatalog, ConfigEnv};
use imgferry::cloud::glance::{DataResponse, Glance};
use imgferry::cloud::keystone::{Session, SessionOptions};
use imgferry::disk::patch;
use imgferry::disk::qcow2::writer::{Compat, Qcow2Format};
use imgferry::disk::qcow2::CompressionType;
use imgferry::disk::stream::StreamPlan;
use imgferry::disk::{open_source, Image, ReadAt, VirtualDisk};
use imgferry::guest::native::NativeGuest;
use imgferry::guest::GuestFs;
use imgferry::pipeline::backend::{run_on_image, BackendChoice};
use imgferry::report::SilentReporter;
use imgferry::sysprep::{self, Hostname, Options, UserAccounts, Words};
use imgferry::transfer::remote::{probe_range, RangeSupport, RemoteImage, RemoteOptions};
use sha2::{Digest, Sha512};
use sysprep_support::{fixture, listing};

fn options() -> Options {
    Options {
        operations: sysprep::select(&[Words::Operations("all,-fs-uuids,-lvm-uuids".into())])
            .unwrap(),
        hostname: Some(Hostname::parse("streamed-01.example.net").unwrap()),
        user_accounts: UserAccounts {
            keep: BTreeSet::from(["alice".to_owned()]),
            ..UserAccounts::default()
        },
        ..Options::default()
    }
}

fn c1_glance() -> Glance {
    let env = ConfigEnv::new(
        [(
            "OS_CLIENT_CONFIG_FILE".to_owned(),
            dev_cloud().clouds_yaml().to_owned(),
        )],
        None,
        None,
    );
    let config = CloudCatalog::load(&env)
        .unwrap()
        .select(Some("c1-source"))
        .unwrap();
    let session = Session::connect(&config, &SessionOptions::default(), &SilentReporter).unwrap();
    Glance::connect(session).unwrap()
}

/// A reader that feeds a SHA-512 with what it delivers.
struct Hashing<R> {
    inner: R,
    hasher: Sha512,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Streams the fixture `name` from c1 with the native sysprep, compares with staged.
fn stream_equals_staged(name: &'static str, dir: &Path, cleanup: &mut ImageGuard) {
    let fixture = fixture(name);
    let staged = fixture.standalone_copy(dir, "staged");
    run_on_image(&staged, &options(), BackendChoice::Native, &SilentReporter).unwrap();

    let image_name = cleanup.name("c1-source", name);
    let source_file = fixture.standalone_copy(dir, "source");
    let id = create_image(
        "c1-source",
        &image_name,
        &[
            "--disk-format",
            "qcow2",
            "--container-format",
            "bare",
            "--file",
            common::path_str(&source_file),
        ],
    );
    let mut glance = c1_glance();
    let record = glance.show(&id).unwrap();
    assert_eq!(
        probe_range(&mut glance, &record).unwrap(),
        RangeSupport::Supported
    );
    // 64 KiB blocks: the fixtures are a few MiB, 1 MiB blocks would fetch them whole.
    let small_blocks = RemoteOptions {
        block_size: 64 << 10,
        ..RemoteOptions::default()
    };
    let remote = Arc::new(RemoteImage::new(glance, &record, small_blocks).unwrap());
    let label = Path::new(name);
    let disk = Arc::new(open_source(Arc::clone(&remote) as Arc<dyn ReadAt>, label).unwrap());
    let mut guest = NativeGuest::open(Arc::clone(&disk) as Arc<dyn VirtualDisk>, label).unwrap();
    guest.require_whole_guest();
    guest.inspect().unwrap();
    let reports = sysprep::run(&mut guest, &options(), &SilentReporter).unwrap();
    assert!(reports.iter().map(|r| r.changes.len()).sum::<usize>() > 10);
    let writes = guest.pending_writes().unwrap();
    // What the staged pipeline commits for the same edits (the edits carry the time
    // they were made, so a second sysprep run would differ in its timestamps).
    let committed = fixture.standalone_copy(dir, "committed");
    patch::apply_zeroing(&committed, &writes.data, &writes.zeros).unwrap();
    let writes = writes.into_data_writes();
    let Image::Qcow2(qcow2) = disk.as_ref() else {
        panic!("{name} is not qcow2");
    };
    let format = Qcow2Format::new(
        Compat::V3,
        qcow2.header().cluster_size(),
        CompressionType::Zlib,
    )
    .unwrap();
    let edited: usize = writes.iter().map(|(_, data)| data.len()).sum();
    let plan = StreamPlan::for_qcow2(qcow2, writes, format).unwrap();
    let metadata = remote.stats();
    eprintln!(
        "{name}: source {} bytes; metadata phase {metadata:?}; {edited} edited bytes; output {} bytes, {} clusters only edits fill",
        remote.size(),
        plan.output_len(),
        plan.edited_only_clusters()
    );
    assert!(
        metadata.bytes < remote.size(),
        "the metadata phase read the whole image"
    );
    drop((guest, disk));
    let mut glance = Arc::into_inner(remote).unwrap().into_glance();

    let Ok(DataResponse::Whole { body, .. }) = glance.open_data(&id, 0) else {
        panic!("no whole body for {id}");
    };
    let mut source = Hashing {
        inner: body,
        hasher: Sha512::new(),
    };
    let out = dir.join(format!("{name}-streamed.qcow2"));
    let sink = BufWriter::new(std::fs::File::create(&out).unwrap());
    let produced = plan.produce(&mut source, sink, &out).unwrap();
    let digest: String = source
        .hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        Some(digest),
        record.os_hash_value,
        "the one GET verifies the source"
    );
    assert_eq!(
        produced.output_bytes,
        std::fs::metadata(&out).unwrap().len()
    );
    common::qemu_img(&["check", "-q", common::path_str(&out)]);
    common::assert_same_content(&committed, &out);
    assert_eq!(native_listing(&out), native_listing(&staged));
}

/// The listing of the image's single OS, read by the native reader.
fn native_listing(image: &Path) -> sysprep_support::Listing {
    let mut guest = NativeGuest::open_file(image).unwrap();
    let mut roots = guest.inspect().unwrap();
    assert_eq!(roots.len(), 1, "{}", image.display());
    guest.mount_os(&roots.remove(0)).unwrap();
    listing(&mut guest)
}

#[test]
fn fixtures_stream_from_glance_equal_to_staged() {
    let dir = common::tempdir();
    let mut cleanup = ImageGuard::new();
    for name in ["debian", "ubuntu"] {
        stream_equals_staged(name, dir.path(), &mut cleanup);
    }
}
