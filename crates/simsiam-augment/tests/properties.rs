//! Property tests in the spirit of Lightly's transform tests: shapes for many input sizes,
//! views that differ, and byte-identical batches on any number of threads.
#![allow(clippy::unwrap_used, missing_docs)]

use simsiam_augment::{
    ChwImage, Compose, MultiViewTransform, Normalization, Normalize, RandomResizedCrop, RgbView,
    SimSiamConfig, Transform, ViewTransform, Workspace, sample_rng,
};

fn noise(width: u32, height: u32, seed: u32) -> Vec<u8> {
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(7);
    (0..width as usize * height as usize * 3)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 24) as u8
        })
        .collect()
}

fn presets() -> [SimSiamConfig; 3] {
    [SimSiamConfig::default(), SimSiamConfig::cifar10(), SimSiamConfig::satellite()]
}

#[test]
fn shapes_for_many_input_sizes() {
    let sizes = [(1, 1), (1, 37), (37, 1), (2, 3), (13, 17), (32, 32), (31, 64), (300, 7), (256, 256)];
    for config in presets() {
        let t = config.build().unwrap();
        let s = config.input_size as usize;
        for (i, &(w, h)) in sizes.iter().enumerate() {
            let px = noise(w, h, i as u32);
            let views = t.apply(RgbView::new(w, h, &px).unwrap(), 1, 0, i as u64).unwrap();
            assert_eq!(views.len(), 2);
            for v in &views {
                assert_eq!(v.len(), 3 * s * s, "{w}x{h} -> {s}");
                assert!(v.iter().all(|x| x.is_finite()));
            }
        }
    }
}

#[test]
fn views_differ_and_are_reproducible() {
    let px = noise(64, 48, 3);
    let src = RgbView::new(64, 48, &px).unwrap();
    for config in presets() {
        let t = config.build().unwrap();
        for index in 0..20 {
            let views = t.apply(src, 5, 1, index).unwrap();
            assert_ne!(views[0], views[1], "views of sample {index} are equal");
            assert_eq!(views, t.apply(src, 5, 1, index).unwrap());
        }
        // Another epoch or seed gives other views.
        assert_ne!(t.apply(src, 5, 1, 0).unwrap(), t.apply(src, 5, 2, 0).unwrap());
        assert_ne!(t.apply(src, 5, 1, 0).unwrap(), t.apply(src, 6, 1, 0).unwrap());
    }
}

#[test]
fn batch_is_identical_on_one_and_two_threads() {
    let sizes = [(40, 30), (32, 32), (17, 13), (64, 64), (5, 90)];
    let pixels: Vec<(u32, u32, Vec<u8>)> = (0..23)
        .map(|i| {
            let (w, h) = sizes[i % sizes.len()];
            (w, h, noise(w, h, i as u32))
        })
        .collect();
    let images: Vec<RgbView<'_>> = pixels.iter().map(|(w, h, p)| RgbView::new(*w, *h, p).unwrap()).collect();
    let indices: Vec<u64> = (0..images.len() as u64).map(|i| 1000 + 3 * i).collect();
    for config in presets() {
        let config = SimSiamConfig { input_size: 24, num_views: 3, ..config };
        let t = config.build().unwrap();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| t.apply_batch(&images, &indices, 9, 4)).unwrap()
        };
        let one = run(1);
        assert_eq!(one, run(2));
        assert_eq!(one, run(3));
        // The batch layout is [view][n][3][H][W] and equals the single-image API.
        let chw = 3 * 24 * 24;
        for (i, (&src, &index)) in images.iter().zip(&indices).enumerate() {
            let views = t.apply(src, 9, 4, index).unwrap();
            for (v, view) in views.iter().enumerate() {
                let at = (v * images.len() + i) * chw;
                assert_eq!(&one[at..at + chw], &view[..], "view {v} of image {i}");
            }
        }
    }
}

#[test]
fn generic_transforms_compose() {
    // A custom view: crop, then a user-built composition.
    let crop = RandomResizedCrop::new(12, 8, (0.5, 1.0), (0.5, 2.0)).unwrap();
    let steps = Compose::default()
        .then(simsiam_augment::RandomHorizontalFlip::new(0.5).unwrap())
        .then(simsiam_augment::RandomSolarization::new(0.5, 128).unwrap());
    let view = ViewTransform::new(crop, steps, Normalize::new(Normalization::NONE).unwrap());
    assert_eq!(view.output_shape(), [3, 8, 12]);
    let px = noise(30, 20, 1);
    let out = view.apply(RgbView::new(30, 20, &px).unwrap(), &mut sample_rng(0, 0, 0)).unwrap();
    assert!(out.iter().all(|v| (0.0..=1.0).contains(v)));
    // A Compose also runs on its own, on a planar image.
    let mut img = ChwImage::from_view(RgbView::new(30, 20, &px).unwrap());
    let c = Compose::default().then(RandomResizedCrop::square(5, 0.3).unwrap());
    c.apply(&mut img, &mut Workspace::new(), &mut sample_rng(0, 0, 1)).unwrap();
    assert_eq!((img.width(), img.height()), (5, 5));
    // Views with different shapes cannot share a batch.
    let a = SimSiamConfig::cifar10().view_transform().unwrap();
    let b = SimSiamConfig { input_size: 16, ..SimSiamConfig::cifar10() }.view_transform().unwrap();
    assert!(MultiViewTransform::new(vec![a, b]).is_err());
    assert!(MultiViewTransform::new(vec![]).is_err());
}
