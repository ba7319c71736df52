//! The two-view and evaluation loaders: determinism across workers, shuffling, shapes, errors.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::sync::Arc;

use candle::Device;
use simsiam_augment::{Normalization, RgbView, SimSiamConfig};
use simsiam_data::{
    Cifar10, DataError, Dataset, DatasetExt, EvalConfig, EvalLoader, EvalTransform, LoaderConfig, Sample,
    Split, TwoViewLoader, epoch_permutation,
};

/// Images of varying sizes, generated on demand; `get(fail)` is an error.
struct Synthetic {
    n: usize,
    fail: Option<usize>,
    same_size: bool,
}

impl Dataset for Synthetic {
    fn len(&self) -> usize {
        self.n
    }

    fn get(&self, index: usize) -> simsiam_data::Result<Sample> {
        if Some(index) == self.fail {
            return Err(DataError::Config(format!("sample {index} is broken")));
        }
        let (w, h) =
            if self.same_size { (20, 20) } else { (30 + (index % 5) as u32, 24 + (index % 3) as u32) };
        let image = image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x * 7 + index as u32) as u8, (y * 5) as u8, (x * y + 3 * index as u32) as u8])
        });
        Ok(Sample { image, label: Some(index % 3), name: format!("img{index}") })
    }
}

fn synthetic(n: usize) -> Arc<dyn Dataset> {
    Arc::new(Synthetic { n, fail: None, same_size: false })
}

fn config(workers: usize, prefetch: usize, drop_last: bool) -> LoaderConfig {
    LoaderConfig { batch_size: 8, seed: 7, drop_last, workers, prefetch }
}

fn flat(t: &candle::Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn identical_for_any_number_of_workers() {
    let collect = |workers, prefetch| {
        let t = SimSiamConfig::cifar10().build().unwrap();
        let loader =
            TwoViewLoader::new(synthetic(37), t, config(workers, prefetch, true), Device::Cpu).unwrap();
        assert_eq!(loader.batches_per_epoch(), 4);
        loader
            .epoch(3)
            .map(|b| {
                let b = b.unwrap();
                assert_eq!(b.x0.dims(), [8, 3, 32, 32]);
                assert_eq!(b.x1.dims(), [8, 3, 32, 32]);
                (flat(&b.x0), flat(&b.x1), b.indices)
            })
            .collect::<Vec<_>>()
    };
    let reference = collect(0, 1);
    assert_eq!(reference.len(), 4);
    for (workers, prefetch) in [(1, 1), (2, 3), (3, 8)] {
        assert!(collect(workers, prefetch) == reference, "{workers} workers, prefetch {prefetch}");
    }
    // The two views differ, and the batch order is the epoch permutation.
    assert_ne!(reference[0].0, reference[0].1);
    let order = epoch_permutation(37, 7, 3);
    let indices: Vec<usize> = reference.iter().flat_map(|r| r.2.clone()).collect();
    assert_eq!(indices, order[..32]);
}

#[test]
fn views_depend_on_sample_not_batch() {
    let t = SimSiamConfig::cifar10().build().unwrap();
    let direct = SimSiamConfig::cifar10().build().unwrap();
    let ds = synthetic(20);
    let loader = TwoViewLoader::new(ds.clone(), t, config(2, 2, false), Device::Cpu).unwrap();
    let batch = loader.epoch(5).nth(1).unwrap().unwrap();
    let i = batch.indices[3];
    let sample = ds.get(i).unwrap();
    let views = direct.apply(RgbView::from_image(&sample.image).unwrap(), 7, 5, i as u64).unwrap();
    let row = |t: &candle::Tensor| flat(&t.get(3).unwrap());
    assert_eq!(row(&batch.x0), views[0]);
    assert_eq!(row(&batch.x1), views[1]);
}

#[test]
fn shuffling_per_epoch_and_drop_last() {
    let t = SimSiamConfig::cifar10().build().unwrap();
    let loader = TwoViewLoader::new(synthetic(21), t, config(2, 2, false), Device::Cpu).unwrap();
    assert_eq!(loader.batches_per_epoch(), 3);
    let epoch = |e| loader.epoch(e).map(|b| b.unwrap().indices).collect::<Vec<_>>();
    let e0 = epoch(0);
    assert_eq!(e0.iter().map(Vec::len).collect::<Vec<_>>(), [8, 8, 5]);
    let mut all: Vec<usize> = e0.concat();
    all.sort_unstable();
    assert_eq!(all, (0..21).collect::<Vec<_>>());
    assert_eq!(epoch(0), e0);
    assert_ne!(epoch(1), e0);
    assert_ne!(epoch_permutation(21, 7, 0), epoch_permutation(21, 8, 0));

    let t = SimSiamConfig::cifar10().build().unwrap();
    let dropping = TwoViewLoader::new(synthetic(21), t, config(1, 4, true), Device::Cpu).unwrap();
    assert_eq!(dropping.batches_per_epoch(), 2);
    assert_eq!(dropping.epoch(0).len(), 2);
    // Stopping early does not hang.
    let mut it = dropping.epoch(1);
    assert!(it.next().unwrap().is_ok());
    drop(it);
}

#[test]
fn errors_surface_in_order() {
    let t = SimSiamConfig::cifar10().build().unwrap();
    let ds: Arc<dyn Dataset> = Arc::new(Synthetic { n: 16, fail: Some(5), same_size: false });
    let loader = TwoViewLoader::new(ds, t, config(2, 2, false), Device::Cpu).unwrap();
    let results: Vec<_> = loader.epoch(0).collect();
    assert_eq!(results.len(), 2);
    let failed: Vec<bool> = results.iter().map(Result::is_err).collect();
    assert_eq!(failed.iter().filter(|&&f| f).count(), 1);
    let err = results.into_iter().find_map(Result::err).unwrap();
    assert!(err.to_string().contains("sample 5 is broken"), "{err}");

    let bad = |cfg: LoaderConfig, views: usize| {
        let t = SimSiamConfig { num_views: views, ..SimSiamConfig::cifar10() }.build().unwrap();
        TwoViewLoader::new(synthetic(4), t, cfg, Device::Cpu).unwrap_err()
    };
    assert!(matches!(bad(LoaderConfig { batch_size: 0, ..config(1, 1, true) }, 2), DataError::Config(_)));
    assert!(matches!(bad(config(1, 0, true), 2), DataError::Config(_)));
    assert!(matches!(bad(config(1, 1, true), 3), DataError::Config(_)));
}

#[test]
fn cifar_through_the_loader_and_subset() {
    let tmp = tempfile::tempdir().unwrap();
    common::write_files(tmp.path(), &common::cifar10_files(6, 4));
    let train = Cifar10::load(tmp.path(), Split::Train).unwrap();
    let subset: Arc<dyn Dataset> = Arc::new(train.take(10));
    let t = SimSiamConfig::cifar10().build().unwrap();
    let loader = TwoViewLoader::new(subset, t, config(2, 2, true), Device::Cpu).unwrap();
    let batches: Vec<_> = loader.epoch(0).map(Result::unwrap).collect();
    assert_eq!(batches.len(), 1);
    assert!(batches[0].indices.iter().all(|&i| i < 10));
    // Normalised CIFAR views: finite, roughly centred values.
    let v = flat(&batches[0].x0);
    assert!(v.iter().all(|x| x.is_finite() && x.abs() < 3.0));
}

#[test]
fn eval_loader_keeps_order_labels_and_names() {
    let tmp = tempfile::tempdir().unwrap();
    common::write_files(tmp.path(), &common::cifar10_files(2, 5));
    let test: Arc<dyn Dataset> = Arc::new(Cifar10::load(tmp.path(), Split::Test).unwrap());
    for workers in [0, 2] {
        let cfg = EvalConfig { batch_size: 2, workers, prefetch: 2 };
        let loader = EvalLoader::new(test.clone(), EvalTransform::cifar10(), cfg, Device::Cpu).unwrap();
        assert_eq!(loader.num_batches(), 3);
        let batches: Vec<_> = loader.batches().map(Result::unwrap).collect();
        assert_eq!(
            batches.iter().map(|b| b.indices.clone()).collect::<Vec<_>>(),
            [vec![0, 1], vec![2, 3], vec![4]]
        );
        assert_eq!(batches[2].names, ["test/00004"]);
        assert_eq!(batches[1].labels, [Some(1), Some(2)]);
        assert_eq!(batches[2].x.dims(), [1, 3, 32, 32]);
        // Plain normalisation of the stored bytes: channel c, pixel p.
        let x = flat(&batches[1].x);
        let n = Normalization::CIFAR10;
        for (c, p) in [(0, 0), (1, 77), (2, 1023)] {
            let raw = f32::from(common::pixel(9, 3, c * 1024 + p));
            let expected = (raw / 255.0 - n.mean[c]) / n.std[c];
            assert_eq!(x[3072 + c * 1024 + p], expected);
        }
    }
}

#[test]
fn eval_resize_and_crop() {
    let ds = synthetic(6);
    let cfg = EvalConfig { batch_size: 4, workers: 1, prefetch: 1 };
    let transform = EvalTransform {
        resize: Some(20),
        square: false,
        center_crop: Some(16),
        normalization: Normalization::NONE,
    };
    let loader = EvalLoader::new(ds.clone(), transform, cfg.clone(), Device::Cpu).unwrap();
    let batches: Vec<_> = loader.batches().map(Result::unwrap).collect();
    assert_eq!(batches[0].x.dims(), [4, 3, 16, 16]);
    assert_eq!(batches[1].x.dims(), [2, 3, 16, 16]);
    let v = flat(&batches[0].x);
    assert!(v.iter().all(|x| (0.0..=1.0).contains(x)));

    // A crop of the whole image changes nothing.
    let same: Arc<dyn Dataset> = Arc::new(Synthetic { n: 2, fail: None, same_size: true });
    let t = EvalTransform {
        resize: None,
        square: false,
        center_crop: Some(20),
        normalization: Normalization::NONE,
    };
    let b = EvalLoader::new(same.clone(), t, cfg.clone(), Device::Cpu)
        .unwrap()
        .batches()
        .next()
        .unwrap()
        .unwrap();
    let img = same.get(1).unwrap().image;
    let x = flat(&b.x);
    assert_eq!(x[3 * 400 + 400 + 5 * 20 + 7], f32::from(img.get_pixel(7, 5).0[1]) / 255.0);

    // Different sizes without a crop cannot share a batch.
    let loader = EvalLoader::new(ds, EvalTransform::cifar10(), cfg, Device::Cpu).unwrap();
    let err = loader.batches().next().unwrap().unwrap_err();
    assert!(matches!(err, DataError::ShapeMismatch { .. }), "{err}");
    assert!(err.to_string().contains("img1"), "{err}");
}
