//! Single ops on a 224x224 image, one thread.

use criterion::{Criterion, criterion_group};
use simsiam_augment::{
    ChwImage, CropBox, RgbView, Workspace, adjust_brightness, adjust_contrast, adjust_hue, adjust_saturation,
    gaussian_blur, resized_crop, rgb_to_grayscale,
};
use std::hint::black_box;

fn ops(c: &mut Criterion) {
    let src_pixels = super::noise(256, 256, 1);
    let src = RgbView::new(256, 256, &src_pixels).expect("valid");
    let mut ws = Workspace::new();
    let mut img = ChwImage::default();
    let crop = CropBox { top: 20, left: 10, height: 200, width: 180 };
    c.bench_function("cpu/resized_crop_256_to_224", |b| {
        b.iter(|| resized_crop(black_box(src), crop, 224, 224, &mut img, &mut ws).expect("valid"))
    });
    let base = img.clone();
    let mut group = c.benchmark_group("cpu/adjust_224");
    group.bench_function("brightness", |b| {
        b.iter(|| adjust_brightness(black_box(&mut img), 1.2).expect("valid"))
    });
    group
        .bench_function("contrast", |b| b.iter(|| adjust_contrast(black_box(&mut img), 0.9).expect("valid")));
    group.bench_function("saturation", |b| {
        b.iter(|| adjust_saturation(black_box(&mut img), 1.1).expect("valid"))
    });
    group.bench_function("hue", |b| b.iter(|| adjust_hue(black_box(&mut img), 0.05).expect("valid")));
    group.bench_function("grayscale", |b| {
        b.iter(|| {
            img.clone_from(&base);
            rgb_to_grayscale(black_box(&mut img))
        })
    });
    group.bench_function("gaussian_blur_k13", |b| {
        b.iter(|| gaussian_blur(black_box(&mut img), 13, 2.0, &mut ws).expect("valid"))
    });
    group.finish();
}

criterion_group!(benches, ops);
