//! The real CIFAR-10 archive at `../shared/data/cifar-10-binary.tar.gz` (relative to the
//! workspace root), extracted through our code; skipped, saying so, when absent.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use simsiam_data::{Cifar10, Dataset, Split, fetch_cifar10};

#[test]
fn real_cifar10_archive() {
    let Some(archive) = common::real_cifar10_archive() else {
        eprintln!("skipped: the real CIFAR-10 archive (../shared/data/cifar-10-binary.tar.gz) is absent");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    // A re-packed archive (its own md5 is not the official one): every batch is checked
    // against its official md5 instead.
    let dir = fetch_cifar10(tmp.path(), Some(&archive.display().to_string())).unwrap();
    assert_eq!(dir, tmp.path().join("cifar-10-batches-bin"));
    assert_eq!(common::list(tmp.path()), ["cifar-10-batches-bin"]);

    let train = Cifar10::load(&dir, Split::Train).unwrap();
    let test = Cifar10::load(&dir, Split::Test).unwrap();
    assert_eq!((train.len(), test.len()), (50_000, 10_000));
    let counts = |labels: &[u8]| {
        let mut c = [0usize; 10];
        labels.iter().for_each(|&l| c[usize::from(l)] += 1);
        c
    };
    assert_eq!(counts(train.labels()), [5_000; 10]);
    assert_eq!(counts(test.labels()), [1_000; 10]);
    assert_eq!(&train.labels()[..5], &[6, 9, 9, 4, 1]);
    assert_eq!(&test.labels()[..5], &[3, 8, 8, 0, 6]);
    assert_eq!(counts(&train.labels()[..10_000]), [1005, 974, 1032, 1016, 999, 937, 1030, 1001, 1025, 981]);
    let frog = train.get(0).unwrap();
    assert_eq!(frog.label, Some(6));
    assert_eq!(train.class_names()[6], "frog");
    assert_eq!(frog.image.dimensions(), (32, 32));
}
