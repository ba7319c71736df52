//! Verified fetching and safe extraction: local archives and a real HTTP server on loopback.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::{Route, Server};
use simsiam_data::download::{FetchOptions, extract_archive, fetch_dataset_with};
use simsiam_data::{Cifar10, DataError, Dataset, DatasetSpec, FileSpec, Split, fetch_dataset};

const TOP: &str = "cifar-10-batches-bin";

/// A tiny CIFAR-10-format dataset, its archive, and a spec listing its md5s.
struct Fixture {
    files: Vec<(String, Vec<u8>)>,
    archive: Vec<u8>,
}

impl Fixture {
    fn new() -> Self {
        let files = common::cifar10_files(3, 2);
        let archive = common::tar_gz(TOP, &files);
        Self { files, archive }
    }

    fn spec(&self, url: &str) -> DatasetSpec {
        DatasetSpec {
            name: "tiny CIFAR-10".into(),
            url: url.into(),
            archive_md5: Some(common::md5_hex(&self.archive)),
            dir: TOP.into(),
            files: self
                .files
                .iter()
                .filter(|(n, _)| n.ends_with(".bin"))
                .map(|(n, b)| FileSpec::new(n, b.len() as u64, Some(&common::md5_hex(b))))
                .collect(),
            check: None,
        }
    }
}

/// The target folder holds nothing but `expected` (no staging folder, no `.part`).
fn assert_only(target: &Path, expected: &[&str]) {
    assert_eq!(common::list(target), expected, "unexpected leftovers in {}", target.display());
}

fn force() -> FetchOptions {
    FetchOptions { force: true }
}

#[test]
fn http_download_verifies_and_extracts() {
    let fx = Fixture::new();
    let server = Server::start(HashMap::from([("/tiny.tar.gz".to_owned(), Route::Ok(fx.archive.clone()))]));
    let spec = fx.spec(&server.url("/tiny.tar.gz"));
    let tmp = tempfile::tempdir().unwrap();
    let dir = fetch_dataset(&spec, tmp.path(), None).unwrap();
    assert_eq!(dir, tmp.path().join(TOP));
    assert_only(tmp.path(), &[TOP, "tiny.tar.gz"]);
    let train = Cifar10::load(&dir, Split::Train).unwrap();
    assert_eq!(train.len(), 15);
    // Present and verified: no second fetch, even from a source that does not exist.
    let again = fetch_dataset(&spec, tmp.path(), Some("/nonexistent/archive.tar.gz")).unwrap();
    assert_eq!(again, dir);
}

/// Fingerprint of a folder: names and contents.
fn snapshot(dir: &Path) -> Vec<(String, String)> {
    common::list(dir)
        .into_iter()
        .map(|n| (n.clone(), common::md5_hex(&std::fs::read(dir.join(&n)).unwrap())))
        .collect()
}

#[test]
fn http_failures_leave_nothing_and_keep_a_good_dataset() {
    let fx = Fixture::new();
    let traversal = common::tar_gz_with(TOP, &fx.files, |b| common::append_raw(b, "../evil", b"pwned"));
    let absolute = common::tar_gz_with(TOP, &fx.files, |b| {
        common::append_raw(b, "/tmp/simsiam-data-test-absolute-evil", b"pwned");
    });
    let half = fx.archive[..fx.archive.len() / 2].to_vec();
    let server = Server::start(HashMap::from([
        ("/ok.tar.gz".to_owned(), Route::Ok(fx.archive.clone())),
        ("/truncated.tar.gz".to_owned(), Route::Truncated(half, fx.archive.len() / 2)),
        ("/traversal.tar.gz".to_owned(), Route::Ok(traversal)),
        ("/absolute.tar.gz".to_owned(), Route::Ok(absolute)),
        ("/error.tar.gz".to_owned(), Route::Status(500)),
    ]));
    let spec = fx.spec(&server.url("/ok.tar.gz"));
    let mut wrong_md5 = spec.clone();
    wrong_md5.files[2].md5 = Some("0123456789abcdef0123456789abcdef".into());
    let mut wrong_archive_md5 = spec.clone();
    wrong_archive_md5.archive_md5 = Some("0123456789abcdef0123456789abcdef".into());

    // Each failure, first into an empty folder, then over a good dataset (forced refetch).
    let good = tempfile::tempdir().unwrap();
    let good_dir = fetch_dataset(&spec, good.path(), None).unwrap();
    std::fs::remove_file(good.path().join("ok.tar.gz")).unwrap();
    let before = snapshot(&good_dir);
    let cases: Vec<(&str, &DatasetSpec, Option<String>, &str)> = vec![
        ("wrong file md5", &wrong_md5, None, "data_batch_3.bin: md5 mismatch"),
        ("wrong archive md5", &wrong_archive_md5, None, "ok.tar.gz: md5 mismatch"),
        ("truncated", &spec, Some(server.url("/truncated.tar.gz")), "truncated.tar.gz failed"),
        ("traversal", &spec, Some(server.url("/traversal.tar.gz")), "refusing archive entry `../evil`"),
        (
            "absolute",
            &spec,
            Some(server.url("/absolute.tar.gz")),
            "refusing archive entry `/tmp/simsiam-data-test-absolute-evil`",
        ),
        ("server error", &spec, Some(server.url("/error.tar.gz")), "500"),
    ];
    for (what, spec, source, expected) in cases {
        let empty = tempfile::tempdir().unwrap();
        let err = fetch_dataset(spec, empty.path(), source.as_deref()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(expected), "{what}: {msg}");
        assert_only(empty.path(), &[]);

        let err = fetch_dataset_with(spec, good.path(), source.as_deref(), &force()).unwrap_err();
        assert!(err.to_string().contains(expected), "{what} over a good dataset: {err}");
        assert_only(good.path(), &[TOP]);
        assert_eq!(snapshot(&good_dir), before, "{what}: the good dataset changed");
    }
    assert!(!Path::new("/tmp/simsiam-data-test-absolute-evil").exists());
    assert!(!good.path().join("evil").exists());
    // The truncated body is a download error, not a decompression error.
    let empty = tempfile::tempdir().unwrap();
    let err = fetch_dataset(&spec, empty.path(), Some(&server.url("/truncated.tar.gz"))).unwrap_err();
    assert!(matches!(err, DataError::Download { .. }), "{err}");
}

#[test]
fn local_sources_and_repacked_archives() {
    let fx = Fixture::new();
    let src = tempfile::tempdir().unwrap();
    // Re-packed: same files, a different archive (another compression level and order).
    let mut reordered = fx.files.clone();
    reordered.reverse();
    let repacked = common::tar_gz(TOP, &reordered);
    assert_ne!(common::md5_hex(&repacked), common::md5_hex(&fx.archive));
    let archive = src.path().join("tiny.tar.gz");
    std::fs::write(&archive, &repacked).unwrap();
    // The official URL is never contacted: the source is local.
    let spec = fx.spec("http://127.0.0.1:9/tiny.tar.gz");
    let file_url = format!("file://{}", archive.display());
    let dir_source = src.path().display().to_string();
    for source in [archive.display().to_string(), file_url, dir_source] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = fetch_dataset(&spec, tmp.path(), Some(&source)).unwrap();
        assert_eq!(Cifar10::load(&dir, Split::Test).unwrap().len(), 2);
        assert_only(tmp.path(), &[TOP]);
    }
    // The local archive is never removed, even when it is bad.
    let mut bad_spec = spec.clone();
    bad_spec.files[0].size += 1;
    let tmp = tempfile::tempdir().unwrap();
    let err = fetch_dataset(&bad_spec, tmp.path(), Some(&archive.display().to_string())).unwrap_err();
    assert!(matches!(err, DataError::Size { .. }), "{err}");
    assert!(archive.is_file());
    assert_only(tmp.path(), &[]);
    let err = fetch_dataset(&spec, tmp.path(), Some("/nonexistent/x.tar.gz")).unwrap_err();
    assert!(matches!(err, DataError::MissingFile { .. }), "{err}");
}

#[test]
fn a_corrupted_dataset_is_replaced() {
    let fx = Fixture::new();
    let src = tempfile::tempdir().unwrap();
    let archive = src.path().join("tiny.tar.gz");
    std::fs::write(&archive, &fx.archive).unwrap();
    let spec = fx.spec("http://127.0.0.1:9/tiny.tar.gz");
    let tmp = tempfile::tempdir().unwrap();
    let source = archive.display().to_string();
    let dir = fetch_dataset(&spec, tmp.path(), Some(&source)).unwrap();
    let victim = dir.join("data_batch_2.bin");
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&victim, &bytes).unwrap();
    let err = simsiam_data::download::verify_dataset(&spec, &dir).unwrap_err();
    assert!(matches!(err, DataError::Checksum { .. }), "{err}");
    fetch_dataset(&spec, tmp.path(), Some(&source)).unwrap();
    simsiam_data::download::verify_dataset(&spec, &dir).unwrap();
    assert_only(tmp.path(), &[TOP]);
}

#[test]
fn extraction_refuses_links_and_escapes() {
    let fx = Fixture::new();
    let tmp = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "symlink",
            common::tar_gz_with(TOP, &fx.files, |b| {
                common::append_symlink(b, "cifar-10-batches-bin/link", "/etc")
            }),
        ),
        (
            "nested ..",
            common::tar_gz_with(TOP, &fx.files, |b| {
                common::append_raw(b, "cifar-10-batches-bin/../../x", b"x")
            }),
        ),
    ];
    for (what, bytes) in cases {
        let archive = tmp.path().join("a.tar.gz");
        std::fs::write(&archive, bytes).unwrap();
        let dest = tempfile::tempdir().unwrap();
        let err = extract_archive(&archive, dest.path()).unwrap_err();
        assert!(matches!(err, DataError::UnsafeEntry { .. }), "{what}: {err}");
    }
    assert!(!tmp.path().join("x").exists());
    // A plain (not gzipped) tar is accepted; a corrupt archive is an error naming it.
    let archive = tmp.path().join("plain.tar");
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(3);
    builder.append_data(&mut header, "d/f.txt", &b"abc"[..]).unwrap();
    std::fs::write(&archive, builder.into_inner().unwrap()).unwrap();
    let dest = tempfile::tempdir().unwrap();
    extract_archive(&archive, dest.path()).unwrap();
    assert_eq!(std::fs::read(dest.path().join("d/f.txt")).unwrap(), b"abc");
    let corrupt = tmp.path().join("corrupt.tar.gz");
    std::fs::write(&corrupt, &fx.archive[..fx.archive.len() / 3]).unwrap();
    let err = extract_archive(&corrupt, dest.path()).unwrap_err();
    assert!(err.to_string().contains("corrupt.tar.gz"), "{err}");
}
