//! Invalid parameters return errors, never panic.
#![allow(clippy::unwrap_used, missing_docs)]

use simsiam_augment::{
    AugmentError, ChwImage, ColorJitter, CropBox, Normalization, Normalize, RandomApply, RandomGaussianBlur,
    RandomGrayscale, RandomHorizontalFlip, RandomResizedCrop, RandomRotate90, RandomSolarization,
    RandomVerticalFlip, RgbView, SimSiamConfig, Workspace, adjust_brightness, adjust_contrast, adjust_hue,
    adjust_saturation, gaussian_blur, resized_crop,
};

#[test]
fn config_knobs_are_validated() {
    let bad: Vec<(&str, SimSiamConfig)> = vec![
        ("cj_prob > 1", SimSiamConfig { cj_prob: 1.5, ..Default::default() }),
        ("hf_prob < 0", SimSiamConfig { hf_prob: -0.1, ..Default::default() }),
        ("vf_prob NaN", SimSiamConfig { vf_prob: f64::NAN, ..Default::default() }),
        ("rr_prob > 1", SimSiamConfig { rr_prob: 2.0, ..Default::default() }),
        ("gray > 1", SimSiamConfig { random_gray_scale: 1.01, ..Default::default() }),
        ("blur < 0", SimSiamConfig { gaussian_blur: -1.0, ..Default::default() }),
        ("min_scale 0", SimSiamConfig { min_scale: 0.0, ..Default::default() }),
        ("min_scale > max", SimSiamConfig { min_scale: 1.5, ..Default::default() }),
        ("input 0", SimSiamConfig { input_size: 0, ..Default::default() }),
        ("negative strength", SimSiamConfig { cj_strength: -1.0, ..Default::default() }),
        ("negative bright", SimSiamConfig { cj_bright: -0.4, ..Default::default() }),
        ("infinite contrast", SimSiamConfig { cj_contrast: f64::INFINITY, ..Default::default() }),
        ("negative sat", SimSiamConfig { cj_sat: -0.1, ..Default::default() }),
        ("hue > 0.5", SimSiamConfig { cj_hue: 0.6, ..Default::default() }),
        ("hue x strength > 0.5", SimSiamConfig { cj_strength: 6.0, ..Default::default() }),
        ("sigmas reversed", SimSiamConfig { sigmas: (2.0, 0.1), ..Default::default() }),
        ("sigma zero", SimSiamConfig { sigmas: (0.0, 2.0), ..Default::default() }),
        ("sigma NaN", SimSiamConfig { sigmas: (0.1, f64::NAN), ..Default::default() }),
        ("even kernel", SimSiamConfig { kernel_size: Some(4), ..Default::default() }),
        ("zero kernel", SimSiamConfig { kernel_size: Some(0), ..Default::default() }),
        ("no views", SimSiamConfig { num_views: 0, ..Default::default() }),
        ("reversed degrees", SimSiamConfig { rr_degrees: Some((10.0, -10.0)), ..Default::default() }),
        ("infinite degrees", SimSiamConfig { rr_degrees: Some((0.0, f64::INFINITY)), ..Default::default() }),
        (
            "zero std",
            SimSiamConfig {
                normalize: Some(Normalization { mean: [0.5; 3], std: [0.0, 1.0, 1.0] }),
                ..Default::default()
            },
        ),
    ];
    for (what, config) in bad {
        let res = config.build();
        assert!(res.is_err(), "{what} was accepted");
        // Errors print a readable message.
        assert!(!res.err().unwrap().to_string().is_empty());
    }
    let ok =
        SimSiamConfig { cj_strength: 0.0, gaussian_blur: 1.0, kernel_size: Some(5), ..Default::default() };
    assert!(ok.build().is_ok());
}

#[test]
fn op_constructors_are_validated() {
    assert!(RandomResizedCrop::new(0, 1, (0.2, 1.0), (0.75, 1.33)).is_err());
    assert!(RandomResizedCrop::new(1, 1, (0.8, 0.2), (0.75, 1.33)).is_err());
    assert!(RandomResizedCrop::new(1, 1, (0.2, 1.0), (0.0, 1.33)).is_err());
    assert!(RandomHorizontalFlip::new(1.1).is_err());
    assert!(RandomVerticalFlip::new(-0.1).is_err());
    assert!(RandomRotate90::new(f64::NAN).is_err());
    assert!(RandomGrayscale::new(7.0).is_err());
    assert!(RandomSolarization::new(-2.0, 128).is_err());
    assert!(RandomApply::new(RandomGrayscale::new(1.0).unwrap(), 1.2).is_err());
    assert!(ColorJitter::new(-0.4, 0.4, 0.4, 0.1).is_err());
    assert!(ColorJitter::new(0.4, 0.4, 0.4, 0.7).is_err());
    assert!(RandomGaussianBlur::new(0.5, (1.0, 0.5), None).is_err());
    assert!(RandomGaussianBlur::new(0.5, (0.1, 2.0), Some(2)).is_err());
    let bad_mean = Normalization { mean: [f32::INFINITY, 0.0, 0.0], std: [1.0; 3] };
    assert!(Normalize::new(bad_mean).is_err());
}

#[test]
fn deterministic_ops_reject_bad_inputs() {
    assert!(matches!(RgbView::new(0, 0, &[]), Err(AugmentError::EmptyImage { .. })));
    assert!(matches!(RgbView::new(2, 2, &[0; 11]), Err(AugmentError::BufferSize { .. })));
    assert!(ChwImage::from_raw(1, 1, vec![0; 2]).is_err());
    let mut img = ChwImage::new(4, 4).unwrap();
    assert!(adjust_brightness(&mut img, -1.0).is_err());
    assert!(adjust_contrast(&mut img, f64::NAN).is_err());
    assert!(adjust_saturation(&mut img, f64::NEG_INFINITY).is_err());
    assert!(adjust_hue(&mut img, 0.51).is_err());
    let mut ws = Workspace::new();
    assert!(gaussian_blur(&mut img, 2, 1.0, &mut ws).is_err());
    assert!(gaussian_blur(&mut img, 3, -1.0, &mut ws).is_err());
    let mut empty = ChwImage::default();
    assert!(matches!(gaussian_blur(&mut empty, 3, 1.0, &mut ws), Err(AugmentError::EmptyImage { .. })));
    let px = [0u8; 4 * 4 * 3];
    let src = RgbView::new(4, 4, &px).unwrap();
    let mut out = ChwImage::default();
    let inside = CropBox { top: 0, left: 0, height: 4, width: 4 };
    assert!(matches!(resized_crop(src, inside, 0, 3, &mut out, &mut ws), Err(AugmentError::ZeroSize { .. })));
    for crop in [
        CropBox { top: 0, left: 0, height: 0, width: 4 },
        CropBox { top: 1, left: 0, height: 4, width: 4 },
        CropBox { top: 0, left: u32::MAX, height: 4, width: 4 },
    ] {
        assert!(matches!(
            resized_crop(src, crop, 3, 3, &mut out, &mut ws),
            Err(AugmentError::CropOutOfBounds { .. })
        ));
    }
}

#[test]
fn batch_api_rejects_mismatched_buffers() {
    let t = SimSiamConfig::cifar10().build().unwrap();
    let px = [9u8; 8 * 8 * 3];
    let images = [RgbView::new(8, 8, &px).unwrap(); 3];
    let mut out = vec![0.0; t.batch_len(3)];
    assert!(matches!(
        t.apply_batch_into(&images, &[0, 1], 0, 0, &mut out),
        Err(AugmentError::LengthMismatch { .. })
    ));
    assert!(matches!(
        t.apply_batch_into(&images, &[0, 1, 2], 0, 0, &mut out[1..]),
        Err(AugmentError::BufferSize { .. })
    ));
    assert!(t.apply_batch_into(&images, &[0, 1, 2], 0, 0, &mut out).is_ok());
    assert!(t.apply_batch_into(&[], &[], 0, 0, &mut []).is_ok());
}

/// Random knob values, many of them invalid: `build` answers `Ok` or `Err`, never panics, and
/// every transform that builds runs on odd image sizes.
#[test]
fn random_configs_never_panic() {
    let values = [-1.0, -0.0, 0.0, 0.05, 0.5, 1.0, 1.5, 3.0, f64::NAN, f64::INFINITY];
    let mut state = 12_345u64;
    let mut pick = |n: usize| {
        state = simsiam_augment::rng::splitmix64(&mut state);
        (state % n as u64) as usize
    };
    let px = [128u8; 3 * 5 * 3];
    let src = RgbView::new(5, 3, &px).unwrap();
    let (mut built, mut rejected) = (0, 0);
    for i in 0..400 {
        let mut v = || values[pick(values.len())];
        let config = SimSiamConfig {
            input_size: [0, 1, 3, 8][i % 4],
            cj_prob: v(),
            cj_strength: v(),
            cj_bright: v(),
            cj_contrast: v(),
            cj_sat: v(),
            cj_hue: v(),
            min_scale: v(),
            random_gray_scale: v(),
            gaussian_blur: v(),
            kernel_size: [None, Some(0), Some(1), Some(3), Some(6)][i % 5],
            sigmas: (v(), v()),
            vf_prob: v(),
            hf_prob: v(),
            rr_prob: v(),
            rr_degrees: None,
            normalize: None,
            num_views: i % 3,
        };
        match config.build() {
            Ok(t) => {
                built += 1;
                assert!(t.apply(src, 0, 0, i as u64).is_ok());
            }
            Err(_) => rejected += 1,
        }
    }
    assert!(rejected > 0);
    // Make sure the valid corner is exercised too.
    let _ = built;
}
