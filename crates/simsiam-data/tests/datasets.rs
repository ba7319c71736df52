//! CIFAR readers and image folders on generated fixtures in the real formats.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::path::Path;

use simsiam_data::{
    CIFAR100_COARSE_CLASSES, CIFAR100_FINE_CLASSES, Cifar10, Cifar100, DataError, Dataset, ImageFolder,
    ImageFolderOptions, Split,
};

#[test]
fn cifar10_reads_splits_labels_and_pixels() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(Cifar10::DIR);
    common::write_files(&dir, &common::cifar10_files(4, 3));
    // The folder itself or its parent.
    for root in [dir.as_path(), tmp.path()] {
        let train = Cifar10::load(root, Split::Train).unwrap();
        assert_eq!(train.len(), 20);
        assert_eq!(train.class_names()[6], "frog");
        assert_eq!(train.num_classes(), 10);
        // Batch k holds labels (k + r) % 10.
        assert_eq!(&train.labels()[..6], &[0, 1, 2, 3, 1, 2]);
        let s = train.get(5).unwrap();
        assert_eq!(s.name, "train/00005");
        assert_eq!(s.label, Some(2));
        // Record 1 of batch 1; pixel (x, y) of channel c is byte c * 1024 + y * 32 + x.
        let px = s.image.get_pixel(3, 2);
        let p = 2 * 32 + 3;
        assert_eq!(
            px.0,
            [common::pixel(1, 1, p), common::pixel(1, 1, 1024 + p), common::pixel(1, 1, 2048 + p)]
        );
        assert!(matches!(train.get(20), Err(DataError::IndexOutOfRange { index: 20, len: 20 })));
    }
    let test = Cifar10::load(tmp.path(), Split::Test).unwrap();
    assert_eq!(test.len(), 3);
    assert_eq!(test.get(0).unwrap().name, "test/00000");
    assert_eq!(test.coarse_labels(), None);
}

#[test]
fn cifar10_errors_name_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let mut files = common::cifar10_files(2, 2);
    // A truncated batch.
    files[2].1.pop();
    common::write_files(tmp.path(), &files);
    let err = Cifar10::load(tmp.path(), Split::Train).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("data_batch_3.bin") && msg.contains("3073-byte record"), "{msg}");

    // A label out of range.
    files[2] = (files[2].0.clone(), common::cifar10_records(2, 2));
    files[3].1[3073] = 10;
    common::write_files(tmp.path(), &files);
    let msg = Cifar10::load(tmp.path(), Split::Train).unwrap_err().to_string();
    assert!(msg.contains("data_batch_4.bin") && msg.contains("record 1") && msg.contains("10"), "{msg}");

    // A missing file.
    std::fs::remove_file(tmp.path().join("test_batch.bin")).unwrap();
    let err = Cifar10::load(tmp.path(), Split::Test).unwrap_err();
    assert!(matches!(&err, DataError::MissingFile { path, .. } if path.ends_with("test_batch.bin")), "{err}");

    // An empty file.
    std::fs::write(tmp.path().join("test_batch.bin"), b"").unwrap();
    assert!(Cifar10::load(tmp.path(), Split::Test).unwrap_err().to_string().contains("test_batch.bin"));
}

#[test]
fn cifar100_fine_and_coarse() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(Cifar100::DIR);
    common::write_files(
        &dir,
        &[
            ("train.bin".into(), common::cifar100_records(0, 25)),
            ("test.bin".into(), common::cifar100_records(1, 5)),
        ],
    );
    let fine = Cifar100::load(tmp.path(), Split::Train).unwrap();
    assert_eq!(fine.len(), 25);
    assert_eq!(fine.num_classes(), 100);
    assert_eq!(fine.get(7).unwrap().label, Some(21));
    assert_eq!(fine.class_names()[21], "chimpanzee");
    assert_eq!(fine.coarse_labels().unwrap()[21], 1);
    assert_eq!(fine.coarse_class_names().unwrap().len(), 20);
    let coarse = Cifar100::load_coarse(&dir, Split::Test).unwrap();
    assert_eq!(coarse.len(), 5);
    assert_eq!(coarse.get(3).unwrap().label, Some(3));
    assert_eq!(coarse.class_names()[3], "food_containers");
    assert_eq!(coarse.fine_labels()[3], 9);
    assert_eq!(CIFAR100_FINE_CLASSES.len(), 100);
    assert_eq!(CIFAR100_COARSE_CLASSES.len(), 20);

    // A fine label of 100 is refused.
    let mut bad = common::cifar100_records(0, 2);
    bad[3074 + 1] = 100;
    std::fs::write(dir.join("test.bin"), bad).unwrap();
    let msg = Cifar100::load(&dir, Split::Test).unwrap_err().to_string();
    assert!(msg.contains("test.bin") && msg.contains("record 1"), "{msg}");
}

/// A `w x h` image whose pixel (x, y) is `(x * 10 + seed, y * 10, seed)`.
fn image(w: u32, h: u32, seed: u8) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 10) as u8 + seed, (y * 10) as u8, seed]))
}

fn write_folder(root: &Path) {
    for d in ["dogs/puppies", "cats", "birds_empty"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    image(5, 4, 1).save(root.join("cats/b.png")).unwrap();
    image(6, 3, 2).save(root.join("cats/a.PNG")).unwrap();
    image(16, 16, 3).save(root.join("dogs/x.jpg")).unwrap();
    image(7, 2, 4).save(root.join("dogs/puppies/p.png")).unwrap();
    image(3, 3, 5).save(root.join("top.png")).unwrap();
    std::fs::write(root.join("cats/notes.txt"), b"not an image").unwrap();
}

#[test]
fn image_folder_lists_sorted_with_labels() {
    let tmp = tempfile::tempdir().unwrap();
    write_folder(tmp.path());
    let ds = ImageFolder::open(tmp.path(), ImageFolderOptions::default()).unwrap();
    assert_eq!(ds.file_names(), ["cats/a.PNG", "cats/b.png", "dogs/puppies/p.png", "dogs/x.jpg", "top.png"]);
    assert_eq!(ds.class_names(), ["cats", "dogs"]);
    assert_eq!(ds.labels(), [Some(0), Some(0), Some(1), Some(1), None]);
    let s = ds.get(1).unwrap();
    assert_eq!((s.name.as_str(), s.label), ("cats/b.png", Some(0)));
    // PNG is lossless.
    assert_eq!(s.image, image(5, 4, 1));
    let jpeg = ds.get(3).unwrap();
    assert_eq!(jpeg.image.dimensions(), (16, 16));
    let diff = jpeg.image.get_pixel(8, 8).0[0].abs_diff(image(16, 16, 3).get_pixel(8, 8).0[0]);
    assert!(diff < 12, "jpeg pixel off by {diff}");

    let flat = ImageFolder::open(
        tmp.path(),
        ImageFolderOptions { labels_from_subfolders: false, ..ImageFolderOptions::default() },
    )
    .unwrap();
    assert!(flat.labels().iter().all(Option::is_none));
    assert!(flat.class_names().is_empty());
}

#[test]
fn image_folder_corrupt_images() {
    let tmp = tempfile::tempdir().unwrap();
    write_folder(tmp.path());
    std::fs::write(tmp.path().join("cats/broken.png"), b"\x89PNG\r\n\x1a\n garbage").unwrap();
    let ds = ImageFolder::open(tmp.path(), ImageFolderOptions::default()).unwrap();
    assert_eq!(ds.len(), 6);
    let idx = ds.file_names().iter().position(|f| f == "cats/broken.png").unwrap();
    let err = ds.get(idx).unwrap_err();
    assert!(err.to_string().contains("broken.png"), "{err}");

    let skipping = ImageFolder::open(
        tmp.path(),
        ImageFolderOptions { skip_corrupt: true, ..ImageFolderOptions::default() },
    )
    .unwrap();
    assert_eq!(skipping.len(), 5);
    assert!(skipping.file_names().iter().all(|f| f != "cats/broken.png"));
    for i in 0..skipping.len() {
        skipping.get(i).unwrap();
    }
}

#[test]
fn image_folder_without_images() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("a.txt"), b"x").unwrap();
    let err = ImageFolder::open(tmp.path(), ImageFolderOptions::default()).unwrap_err();
    assert!(matches!(err, DataError::NoImages { .. }), "{err}");
    let err = ImageFolder::open(tmp.path().join("absent"), ImageFolderOptions::default()).unwrap_err();
    assert!(err.to_string().contains("absent"), "{err}");
}

#[cfg(unix)]
#[test]
fn image_folder_survives_a_link_loop() {
    let tmp = tempfile::tempdir().unwrap();
    write_folder(tmp.path());
    std::os::unix::fs::symlink(tmp.path(), tmp.path().join("dogs/loop")).unwrap();
    let ds = ImageFolder::open(tmp.path(), ImageFolderOptions::default()).unwrap();
    assert_eq!(ds.len(), 5);
}
