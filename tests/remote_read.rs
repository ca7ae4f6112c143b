//! The remote random-access reader (`transfer::remote`) against the real Glance of
//! `scripts/dev-cloud`: the `Range` probe, qcow2 images opened through the disk layer
//! over HTTP ranges (facts compared with `qemu-img info`, guest bytes and extents with
//! the same file opened locally), and the fault proxy (tests/common/fault_proxy.rs) for
//! a store ignoring `Range`, garbled `Content-Range`, cut bodies, 503s and a rejected
//! token.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::dev_cloud::dev_cloud;
use common::fault_proxy::{Fault, FaultProxy, Rule};
use common::image_guard::{create_image, ImageGuard};
use imgferry::cloud::config::{CloudCatalog, ConfigEnv};
use imgferry::cloud::glance::{Glance, Image};
use imgferry::cloud::keystone::{Session, SessionOptions};
use imgferry::disk::{open_image, open_source, Image as Disk, ReadAt, VirtualDisk};
use imgferry::report::SilentReporter;
use imgferry::transfer::remote::{
    probe_range, RangeSupport, RemoteError, RemoteImage, RemoteOptions, SequentialBody,
};
use imgferry::transfer::RetryPolicy;

/// A Glance client of `cloud` in the clouds.yaml at `clouds`.
fn glance(clouds: &str, cloud: &str) -> Glance {
    let env = ConfigEnv::new(
        [("OS_CLIENT_CONFIG_FILE".to_owned(), clouds.to_owned())],
        None,
        None,
    );
    let config = CloudCatalog::load(&env)
        .unwrap()
        .select(Some(cloud))
        .unwrap();
    let session = Session::connect(&config, &SessionOptions::default(), &SilentReporter).unwrap();
    Glance::connect(session).unwrap()
}

/// A clouds.yaml whose `proxied` cloud reaches c1's Glance through `proxy`.
fn proxied_clouds(dir: &Path, proxy: &FaultProxy) -> PathBuf {
    let dev = dev_cloud();
    let clouds = dir.join("clouds.yaml");
    std::fs::write(
        &clouds,
        format!(
            "clouds:\n  proxied:\n    auth:\n      auth_url: {}\n      username: source-user\n      password: {}\n      project_name: source\n      user_domain_name: Default\n      project_domain_name: Default\n    image_endpoint_override: {}\n",
            dev.var("IMGFERRY_DEV_C1_KEYSTONE_URL"),
            dev.var("IMGFERRY_DEV_PASSWORD"),
            proxy.url()
        ),
    )
    .unwrap();
    clouds
}

fn glance_host_port() -> String {
    dev_cloud()
        .var("IMGFERRY_DEV_C1_GLANCE_URL")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

/// A 24 MiB qcow2 whose data clusters lie in reverse guest order in the file (qemu-io
/// writes 1 MiB pieces from the end backwards), with a zero cluster range.
fn reverse_qcow2(dir: &Path) -> PathBuf {
    let path = dir.join("reverse.qcow2");
    common::qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        common::path_str(&path),
        "24M",
    ]);
    let writes: Vec<String> = (0..20u64)
        .rev()
        .map(|mib| format!("write -P {} {mib}M 1M", 0x10 + mib))
        .chain(["write -z 21M 512k".to_owned()])
        .collect();
    let writes: Vec<&str> = writes.iter().map(String::as_str).collect();
    common::qemu_io("qcow2", &path, &writes);
    path
}

/// A qcow2 with compressed clusters: pseudo-random and patterned data, `convert -c`.
fn compressed_qcow2(dir: &Path) -> PathBuf {
    let raw = dir.join("plain.raw");
    let mut data = vec![0u8; 12 << 20];
    data[..2 << 20].copy_from_slice(&common::random_bytes(2 << 20, 5));
    for (i, byte) in data[(5 << 20)..(9 << 20)].iter_mut().enumerate() {
        *byte = (i % 251) as u8;
    }
    std::fs::write(&raw, &data).unwrap();
    let path = dir.join("compressed.qcow2");
    common::qemu_img(&[
        "convert",
        "-q",
        "-c",
        "-f",
        "raw",
        "-O",
        "qcow2",
        common::path_str(&raw),
        common::path_str(&path),
    ]);
    path
}

/// Uploads `file` to c1 as `disk_format` and returns its record.
fn uploaded(cleanup: &mut ImageGuard, glance: &mut Glance, file: &Path, format: &str) -> Image {
    let name = cleanup.name("c1-source", "remote-read");
    let id = create_image(
        "c1-source",
        &name,
        &[
            "--disk-format",
            format,
            "--container-format",
            "bare",
            "--file",
            common::path_str(file),
        ],
    );
    glance.show(&id).unwrap()
}

fn quick_retry(retries: u32) -> RemoteOptions {
    RemoteOptions {
        retry: RetryPolicy {
            retries,
            first_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(100),
        },
        ..RemoteOptions::default()
    }
}

/// Every guest byte of `remote` equals `local`'s, read in 1 MiB pieces.
fn assert_same_guest(remote: &Disk, local: &Disk) {
    assert_eq!(remote.virtual_size(), local.virtual_size());
    let size = local.virtual_size();
    assert_eq!(
        remote.extents(0, size).unwrap(),
        local.extents(0, size).unwrap()
    );
    let (mut a, mut b) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    let mut at = 0;
    while at < size {
        let n = (size - at).min(1 << 20) as usize;
        remote.read_at(&mut a[..n], at).unwrap();
        local.read_at(&mut b[..n], at).unwrap();
        assert!(a[..n] == b[..n], "guest bytes differ in the MiB at {at}");
        at += n as u64;
    }
}

#[test]
fn qcow2_images_read_through_ranges_match_the_local_file() {
    let dir = common::tempdir();
    let mut cleanup = ImageGuard::new();
    let clouds = dev_cloud().clouds_yaml().to_owned();
    for file in [reverse_qcow2(dir.path()), compressed_qcow2(dir.path())] {
        let mut source = glance(&clouds, "c1-source");
        let image = uploaded(&mut cleanup, &mut source, &file, "qcow2");
        assert_eq!(
            probe_range(&mut source, &image).unwrap(),
            RangeSupport::Supported
        );
        let remote = Arc::new(RemoteImage::new(source, &image, RemoteOptions::default()).unwrap());
        assert_eq!(remote.size(), std::fs::metadata(&file).unwrap().len());
        let disk = open_source(Arc::clone(&remote) as Arc<dyn ReadAt>, &file).unwrap();
        let opened = remote.stats();
        let Disk::Qcow2(qcow2) = &disk else {
            panic!(
                "{} not detected as qcow2 through the range reader",
                file.display()
            );
        };
        let info = common::qemu_img_info(&file);
        assert_eq!(qcow2.header().size, info["virtual-size"].as_u64().unwrap());
        assert_eq!(
            qcow2.header().cluster_size(),
            info["cluster-size"].as_u64().unwrap()
        );
        assert_eq!(
            info["format-specific"]["data"]["compat"],
            if qcow2.header().version == 3 {
                "1.1"
            } else {
                "0.10"
            }
        );
        // Header, L1 and the first refcount block sit in the first MiB: one request.
        assert_eq!(opened.requests, 1, "{opened:?}");

        assert_same_guest(&disk, &open_image(&file).unwrap());
        let read = remote.stats();
        eprintln!(
            "{}: {} bytes; open: {opened:?}; whole guest read: {read:?}",
            file.display(),
            remote.size()
        );
        assert_eq!(read.retries, 0);
        assert!(
            read.bytes <= 2 * remote.size(),
            "the whole guest read fetched {} bytes of a {}-byte file",
            read.bytes,
            remote.size()
        );
    }
}

#[test]
fn probe_and_reads_through_the_fault_proxy() {
    let dir = common::tempdir();
    let mut cleanup = ImageGuard::new();
    let file = reverse_qcow2(dir.path());
    let bytes = std::fs::read(&file).unwrap();
    let mut direct = glance(dev_cloud().clouds_yaml(), "c1-source");
    let image = uploaded(&mut cleanup, &mut direct, &file, "qcow2");
    let proxy = FaultProxy::start(&glance_host_port());
    let clouds = proxied_clouds(dir.path(), &proxy);
    let clouds = common::path_str(&clouds);
    let rule = |fault, times| Rule {
        method: "GET",
        path_suffix: format!("{}/file", image.id),
        fault,
        times,
    };

    // A store that ignores Range, or names other bytes: unsupported, with the reason.
    let mut proxied = glance(clouds, "proxied");
    proxy.add(rule(Fault::StripRange, 1));
    let RangeSupport::Unsupported { reason } = probe_range(&mut proxied, &image).unwrap() else {
        panic!("a store answering 200 was taken for one serving ranges");
    };
    assert!(reason.contains("answered 200"), "{reason}");
    proxy.add(rule(Fault::ContentRange("bytes 1-512/99"), 1));
    let RangeSupport::Unsupported { reason } = probe_range(&mut proxied, &image).unwrap() else {
        panic!("a wrong Content-Range was accepted");
    };
    assert!(reason.contains("bytes 1-512/99"), "{reason}");
    assert_eq!(
        probe_range(&mut proxied, &image).unwrap(),
        RangeSupport::Supported
    );

    // A cut body and a 503 burst are retried; a rejected token is renewed and replayed.
    let remote = RemoteImage::new(proxied, &image, quick_retry(3)).unwrap();
    proxy.add(rule(Fault::CloseResponseAfter { bytes: 100_000 }, 1));
    let mut buf = vec![0u8; 300_000];
    remote.read_exact_at(&mut buf, 2 << 20).unwrap();
    assert!(buf[..] == bytes[2 << 20..][..300_000]);
    proxy.add(rule(Fault::Unavailable, 2));
    remote.read_exact_at(&mut buf, 6 << 20).unwrap();
    assert!(buf[..] == bytes[6 << 20..][..300_000]);
    proxy.add(rule(Fault::InvalidToken, 1));
    remote.read_exact_at(&mut buf, 10 << 20).unwrap();
    assert!(buf[..] == bytes[10 << 20..][..300_000]);
    let stats = remote.stats();
    assert_eq!(stats.retries, 3, "{stats:?}");
    // One block each; the 401 was replayed inside the session, not counted as a retry.
    assert_eq!(stats.requests, 6, "{stats:?}");
    let ranges: Vec<String> = proxy
        .seen()
        .iter()
        .filter_map(|s| s.range.clone())
        .collect();
    assert!(
        ranges.contains(&"bytes=10485760-11534335".to_owned()),
        "{ranges:?}"
    );
    let proxied = remote.into_glance();
    assert_eq!(proxied.session().renewals(), 1);

    // Wrong answers to a read are typed errors, not retried, not a panic.
    let remote = RemoteImage::new(proxied, &image, quick_retry(3)).unwrap();
    let error_of = |fault| {
        proxy.add(rule(fault, 1));
        let error = remote
            .read_exact_at(&mut [0u8; 4096], 12 << 20)
            .unwrap_err();
        let inner = error.into_inner().expect("a typed error inside");
        *inner.downcast::<RemoteError>().expect("a RemoteError")
    };
    assert!(matches!(
        error_of(Fault::StripRange),
        RemoteError::RangeIgnored { .. }
    ));
    let garbled = error_of(Fault::ContentRange("bytes 0-4095/99"));
    assert!(
        matches!(garbled, RemoteError::WrongRange { .. }),
        "{garbled}"
    );
    let nonsense = error_of(Fault::ContentRange("items=0-1"));
    assert!(
        matches!(nonsense, RemoteError::WrongRange { .. }),
        "{nonsense}"
    );
    // A body cut short every time: retried, then given up with the reason.
    proxy.add(rule(Fault::CloseResponseAfter { bytes: 1000 }, 4));
    let error = remote
        .read_exact_at(&mut [0u8; 4096], 12 << 20)
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("after 4 attempts") && message.contains("of 1048576 bytes"),
        "{message}"
    );
    // Past the end: UnexpectedEof, nothing requested.
    let before = remote.stats().requests;
    let error = remote
        .read_exact_at(&mut [0u8; 2], remote.size() - 1)
        .unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::UnexpectedEof);
    assert_eq!(remote.stats().requests, before);
}

#[test]
fn the_one_sequential_get_resumes_after_a_cut_and_refuses_a_restart() {
    let dir = common::tempdir();
    let mut cleanup = ImageGuard::new();
    let file = reverse_qcow2(dir.path());
    let bytes = std::fs::read(&file).unwrap();
    let mut direct = glance(dev_cloud().clouds_yaml(), "c1-source");
    let image = uploaded(&mut cleanup, &mut direct, &file, "qcow2");
    let proxy = FaultProxy::start(&glance_host_port());
    let clouds = proxied_clouds(dir.path(), &proxy);
    let mut proxied = glance(common::path_str(&clouds), "proxied");
    let rule = |fault| Rule {
        method: "GET",
        path_suffix: format!("{}/file", image.id),
        fault,
        times: 1,
    };
    let size = bytes.len() as u64;
    let retry = quick_retry(3).retry;

    // Cut at 5 MiB, then a 503 to the first resume: the reader sees every byte once.
    proxy.add(rule(Fault::CloseResponseAfter { bytes: 5 << 20 }));
    proxy.add(rule(Fault::Unavailable));
    let mut body = SequentialBody::new(&mut proxied, &image.id, size, retry);
    let mut got = Vec::new();
    body.read_to_end(&mut got).unwrap();
    assert!(got == bytes, "the resumed body differs from the file");
    assert_eq!((body.requests, body.resumes), (3, 1));
    let resumed_at: Vec<String> = proxy
        .seen()
        .iter()
        .filter_map(|s| s.range.clone())
        .collect();
    assert_eq!(resumed_at, vec![format!("bytes={}-", 5 << 20); 2]);

    // A store answering the resume with the whole image: an error, not bytes twice.
    proxy.add(rule(Fault::CloseResponseAfter { bytes: 1 << 20 }));
    proxy.add(rule(Fault::StripRange));
    let mut body = SequentialBody::new(&mut proxied, &image.id, size, retry);
    let error = body.read_to_end(&mut Vec::new()).unwrap_err();
    let inner = error
        .into_inner()
        .unwrap()
        .downcast::<RemoteError>()
        .unwrap();
    assert!(
        matches!(*inner, RemoteError::RangeIgnored { .. }),
        "{inner}"
    );
}
