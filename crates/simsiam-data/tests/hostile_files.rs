//! What users' folders really hold: file names that are not UTF-8, broken links, notes next to
//! the images, and CIFAR batches cut short at a record boundary.
#![allow(clippy::unwrap_used, missing_docs)]

use std::fs::File;
use std::path::Path;

use simsiam_data::{CIFAR_PIXELS, Cifar10, Cifar100, Dataset, ImageFolder, ImageFolderOptions, Split};

fn png(root: &Path, name: impl AsRef<Path>, seed: u8) {
    let path = root.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_fn(4, 3, |x, y| image::Rgb([x as u8 * 40 + seed, y as u8 * 60, seed]))
        .save_with_format(&path, image::ImageFormat::Png)
        .unwrap();
}

/// A file name in Latin-1 (`café.png` written by an old camera or a Windows share): not UTF-8,
/// yet a file like any other, which must be listed, labelled and read.
#[cfg(target_os = "linux")]
#[test]
fn image_folder_reads_non_utf8_file_names() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    let tmp = tempfile::tempdir().unwrap();
    let latin1 = OsStr::from_bytes(b"caf\xe9.png");
    png(tmp.path(), Path::new("cats").join(latin1), 1);
    png(tmp.path(), "cats/b.png", 2);
    png(tmp.path(), Path::new(OsStr::from_bytes(b"d\xf6gs")).join("x.png"), 3);
    let ds = ImageFolder::open(tmp.path(), ImageFolderOptions::default()).unwrap();
    assert_eq!(ds.len(), 3, "{:?}", ds.file_names());
    assert_eq!(ds.class_names().len(), 2, "{:?}", ds.class_names());
    for i in 0..ds.len() {
        let sample = ds.get(i).unwrap_or_else(|e| panic!("sample {i} ({}): {e}", ds.file_names()[i]));
        assert_eq!(sample.image.dimensions(), (4, 3));
        assert!(sample.label.is_some(), "{}", sample.name);
    }
    // The name shown (CSV, figures) is the lossy one; the file read is the real one.
    assert!(ds.file_names().iter().any(|n| n.starts_with("cats/caf") && n.ends_with(".png")));
}

/// A broken link and a README among the images are passed over, not fatal.
#[cfg(unix)]
#[test]
fn image_folder_skips_broken_links_and_non_images() {
    let tmp = tempfile::tempdir().unwrap();
    png(tmp.path(), "cats/a.png", 1);
    png(tmp.path(), "dogs/b.png", 2);
    std::fs::write(tmp.path().join("README.txt"), b"where these images come from").unwrap();
    std::fs::write(tmp.path().join("cats/notes.md"), b"# notes").unwrap();
    std::os::unix::fs::symlink(tmp.path().join("gone/c.png"), tmp.path().join("dogs/c.png")).unwrap();
    std::os::unix::fs::symlink(tmp.path().join("gone"), tmp.path().join("old_cats")).unwrap();
    let ds = ImageFolder::open(tmp.path(), ImageFolderOptions::default())
        .unwrap_or_else(|e| panic!("a broken link or a README aborted the listing: {e}"));
    assert_eq!(ds.file_names(), ["cats/a.png", "dogs/b.png"]);
    for i in 0..ds.len() {
        ds.get(i).unwrap();
    }
}

/// `n` CIFAR records of zero bytes (label 0, black pixels), as a sparse file: the official
/// sizes cost no disk.
fn zero_records(path: &Path, n: usize, record: usize) {
    File::create(path).unwrap().set_len((n * record) as u64).unwrap();
}

/// A batch cut at a record boundary (a copy stopped after 9,000 of 10,000 records) reads as a
/// smaller dataset unless the count is checked: it must be refused, naming the file and the
/// counts.
#[test]
fn cifar_batches_cut_to_whole_records_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(Cifar10::DIR);
    std::fs::create_dir_all(&dir).unwrap();
    let record = 1 + CIFAR_PIXELS;
    for f in ["data_batch_1.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"] {
        zero_records(&dir.join(f), 10_000, record);
    }
    zero_records(&dir.join("data_batch_2.bin"), 9_000, record);
    zero_records(&dir.join("test_batch.bin"), 10_000, record);
    let err = Cifar10::load(tmp.path(), Split::Train).map(|d| d.len()).unwrap_err().to_string();
    assert!(
        err.contains("data_batch_2.bin") && err.contains("9000 records") && err.contains("10000"),
        "{err}"
    );
    // The test split alone is whole, and reads.
    assert_eq!(Cifar10::load(tmp.path(), Split::Test).unwrap().len(), 10_000);
    // A cut test batch next to whole training batches.
    zero_records(&dir.join("data_batch_2.bin"), 10_000, record);
    zero_records(&dir.join("test_batch.bin"), 2_500, record);
    let err = Cifar10::load(tmp.path(), Split::Test).map(|d| d.len()).unwrap_err().to_string();
    assert!(err.contains("test_batch.bin") && err.contains("2500 records"), "{err}");

    let dir = tmp.path().join(Cifar100::DIR);
    std::fs::create_dir_all(&dir).unwrap();
    zero_records(&dir.join("train.bin"), 50_000, record + 1);
    zero_records(&dir.join("test.bin"), 9_990, record + 1);
    let err = Cifar100::load(tmp.path(), Split::Test).map(|d| d.len()).unwrap_err().to_string();
    assert!(err.contains("test.bin") && err.contains("9990 records") && err.contains("10000"), "{err}");
}
