//! `data.limit` on a class-per-folder dataset: a random subset drawn from the run's seed, so a
//! quick try sees every class; the same seed picks the same images (as `embed` and the figures
//! need), another seed others.

use std::collections::BTreeSet;
use std::path::Path;

use image::{Rgb, RgbImage};
use simsiam::config::RunConfig;
use simsiam::run::open_datasets;

/// Four class folders `a`..`d` of 25 tiny PNGs each.
fn class_folders(root: &Path) {
    for class in ["a", "b", "c", "d"] {
        let dir = root.join(class);
        std::fs::create_dir_all(&dir).expect("mkdir");
        for i in 0..25u8 {
            RgbImage::from_pixel(2, 2, Rgb([i, 0, 0])).save(dir.join(format!("{i:02}.png"))).expect("png");
        }
    }
}

/// The names of the limited training set of `seed`.
fn picked(root: &Path, seed: u64) -> Vec<String> {
    let run = RunConfig::preset("satellite")
        .and_then(|c| {
            c.with_overrides(&[
                format!("data.path={}", root.display()),
                "data.limit=12".into(),
                format!("train.seed={seed}"),
            ])
        })
        .expect("config");
    let train = open_datasets(&run.data, run.train.seed).expect("folder").train;
    (0..train.len()).map(|i| train.get(i).expect("image").name).collect()
}

#[test]
fn a_limit_is_a_seeded_random_subset_that_keeps_every_class() {
    let dir = tempfile::tempdir().expect("tempdir");
    class_folders(dir.path());
    let first = picked(dir.path(), 0);
    assert_eq!(first.len(), 12);
    // The first 12 files in sorted order would all be in `a/`.
    let classes: BTreeSet<&str> = first.iter().filter_map(|n| n.split('/').next()).collect();
    assert_eq!(classes.len(), 4, "{first:?}");
    assert_eq!(picked(dir.path(), 0), first, "the same seed picks the same images");
    assert_ne!(picked(dir.path(), 1), first, "another seed picks others");
    let mut sorted = first.clone();
    sorted.sort();
    assert_eq!(sorted, first, "in the folder's order");
}
