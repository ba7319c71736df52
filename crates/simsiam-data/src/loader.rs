//! Loaders: batches of augmented views (pretraining) and of plain images (evaluation), built on
//! worker threads ahead of the consumer, in an order and with values that do not depend on the
//! number of workers.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use candle::{Device, Tensor};
use rayon::prelude::*;
use simsiam_augment::rng::{below, sample_rng};
use simsiam_augment::{
    AugmentError, ChwImage, CropBox, MultiViewTransform, Normalization, Normalize, RgbView, SimSiamTransform,
    Workspace, resized_crop,
};

use crate::dataset::{Dataset, Sample};
use crate::error::{DataError, Result};

/// ChaCha stream of the shuffling generator, far from the view streams (`0..views`).
const SHUFFLE_STREAM: u64 = 0x5348_5546_464c_4521;

/// The order of `n` samples in `epoch`: a Fisher-Yates permutation drawn from the ChaCha8
/// generator `sample_rng(seed, epoch, u64::MAX)` on stream `0x5348_5546_464C_4521`
/// (`simsiam_augment::rng`), so it depends only on `(seed, epoch)`.
pub fn epoch_permutation(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut rng = sample_rng(seed, epoch, u64::MAX);
    rng.set_stream(SHUFFLE_STREAM);
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = below(&mut rng, i as u64 + 1) as usize;
        order.swap(i, j);
    }
    order
}

/// A multi-view augmentation with a batch API writing `[view][n][3][H][W]` into one `f32`
/// buffer: what [`TwoViewLoader`] needs. Implemented for `simsiam-augment`'s
/// [`SimSiamTransform`] and [`MultiViewTransform`].
pub trait BatchTransform: Send + Sync {
    /// Views per image.
    fn num_views(&self) -> usize;
    /// `[3, H, W]` of every view.
    fn view_shape(&self) -> [usize; 3];
    /// Augments `images`; view `v` of image `i` must depend only on
    /// `(seed, epoch, indices[i], v)`.
    ///
    /// # Errors
    /// The augmentation's error.
    fn apply_batch_into(
        &self,
        images: &[RgbView<'_>],
        indices: &[u64],
        seed: u64,
        epoch: u64,
        out: &mut [f32],
    ) -> std::result::Result<(), AugmentError>;
}

impl BatchTransform for MultiViewTransform {
    fn num_views(&self) -> usize {
        MultiViewTransform::num_views(self)
    }

    fn view_shape(&self) -> [usize; 3] {
        MultiViewTransform::view_shape(self)
    }

    fn apply_batch_into(
        &self,
        images: &[RgbView<'_>],
        indices: &[u64],
        seed: u64,
        epoch: u64,
        out: &mut [f32],
    ) -> std::result::Result<(), AugmentError> {
        MultiViewTransform::apply_batch_into(self, images, indices, seed, epoch, out)
    }
}

impl BatchTransform for SimSiamTransform {
    fn num_views(&self) -> usize {
        SimSiamTransform::num_views(self)
    }

    fn view_shape(&self) -> [usize; 3] {
        SimSiamTransform::view_shape(self)
    }

    fn apply_batch_into(
        &self,
        images: &[RgbView<'_>],
        indices: &[u64],
        seed: u64,
        epoch: u64,
        out: &mut [f32],
    ) -> std::result::Result<(), AugmentError> {
        SimSiamTransform::apply_batch_into(self, images, indices, seed, epoch, out)
    }
}

impl<T: BatchTransform + ?Sized> BatchTransform for Arc<T> {
    fn num_views(&self) -> usize {
        (**self).num_views()
    }

    fn view_shape(&self) -> [usize; 3] {
        (**self).view_shape()
    }

    fn apply_batch_into(
        &self,
        images: &[RgbView<'_>],
        indices: &[u64],
        seed: u64,
        epoch: u64,
        out: &mut [f32],
    ) -> std::result::Result<(), AugmentError> {
        (**self).apply_batch_into(images, indices, seed, epoch, out)
    }
}

/// Settings of [`TwoViewLoader`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoaderConfig {
    /// Images per batch (256).
    pub batch_size: usize,
    /// Run seed: with the epoch it fixes the order and every augmentation (0).
    pub seed: u64,
    /// Drop the last, incomplete batch (`true`, as SimSiam training does).
    pub drop_last: bool,
    /// Worker threads decoding and augmenting; 0 builds each batch in the caller's thread when
    /// it is asked for (available parallelism).
    pub workers: usize,
    /// Batches built ahead of the consumer, at most; at least 1 (4).
    pub prefetch: usize,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        Self {
            batch_size: 256,
            seed: 0,
            drop_last: true,
            workers: std::thread::available_parallelism().map_or(1, usize::from),
            prefetch: 4,
        }
    }
}

/// Two augmented views of a batch.
#[derive(Debug, Clone)]
pub struct TwoViewBatch {
    /// First views, `[n, 3, H, W]`, `f32`.
    pub x0: Tensor,
    /// Second views, `[n, 3, H, W]`, `f32`.
    pub x1: Tensor,
    /// Dataset index of each image.
    pub indices: Vec<usize>,
}

/// The worker pool and in-flight window shared by both loaders.
#[derive(Debug, Clone)]
struct Engine {
    pool: Arc<rayon::ThreadPool>,
    inline: bool,
    window: usize,
}

impl Engine {
    fn new(workers: usize, prefetch: usize) -> Result<Self> {
        if prefetch == 0 {
            return Err(DataError::Config("prefetch must be at least 1".into()));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(workers.max(1))
            .thread_name(|i| format!("simsiam-data-{i}"))
            .build()
            .map_err(|e| DataError::Worker(format!("cannot start worker threads: {e}")))?;
        Ok(Self { pool: Arc::new(pool), inline: workers == 0, window: prefetch })
    }

    fn run<T: Send + 'static>(&self, total: usize, job: Job<T>) -> Batches<T> {
        let (tx, rx) = sync_channel(self.window);
        let mut batches = Batches {
            engine: self.clone(),
            job,
            total,
            submitted: 0,
            yielded: 0,
            tx,
            rx,
            pending: BTreeMap::new(),
            cancelled: Arc::new(AtomicBool::new(false)),
        };
        // Start at once: the first batches build while the caller is busy elsewhere.
        if !self.inline {
            batches.refill();
        }
        batches
    }
}

/// Builds batch number `b`.
type Job<T> = Arc<dyn Fn(usize) -> Result<T> + Send + Sync>;

/// Runs `job(b)`, turning a panic into an error.
fn run_job<T>(job: &Job<T>, b: usize) -> Result<T> {
    std::panic::catch_unwind(AssertUnwindSafe(|| job(b)))
        .unwrap_or_else(|_| Err(DataError::Worker(format!("a worker panicked while building batch {b}"))))
}

/// The batches of one pass, in order, built by the loader's workers at most `prefetch` ahead
/// of the consumer. Dropping it stops the work that has not started.
pub struct Batches<T> {
    engine: Engine,
    job: Job<T>,
    total: usize,
    submitted: usize,
    yielded: usize,
    tx: SyncSender<(usize, Result<T>)>,
    rx: Receiver<(usize, Result<T>)>,
    pending: BTreeMap<usize, Result<T>>,
    cancelled: Arc<AtomicBool>,
}

impl<T> std::fmt::Debug for Batches<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batches")
            .field("total", &self.total)
            .field("submitted", &self.submitted)
            .field("yielded", &self.yielded)
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> Batches<T> {
    /// Keeps `window` batches in flight.
    fn refill(&mut self) {
        while self.submitted < self.total && self.submitted - self.yielded < self.engine.window {
            let (b, job, tx, cancelled) =
                (self.submitted, self.job.clone(), self.tx.clone(), self.cancelled.clone());
            self.engine.pool.spawn(move || {
                if !cancelled.load(Ordering::Relaxed) {
                    // The receiver is gone only when the consumer dropped the iterator.
                    let _ = tx.send((b, run_job(&job, b)));
                }
            });
            self.submitted += 1;
        }
    }
}

impl<T: Send + 'static> Iterator for Batches<T> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        if self.yielded >= self.total {
            return None;
        }
        if self.engine.inline {
            let (job, b) = (&self.job, self.yielded);
            self.yielded += 1;
            return Some(self.engine.pool.install(|| run_job(job, b)));
        }
        self.refill();
        loop {
            if let Some(batch) = self.pending.remove(&self.yielded) {
                self.yielded += 1;
                self.refill();
                return Some(batch);
            }
            match self.rx.recv() {
                Ok((b, batch)) => {
                    self.pending.insert(b, batch);
                }
                Err(_) => {
                    self.yielded = self.total;
                    return Some(Err(DataError::Worker("workers stopped".into())));
                }
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.total - self.yielded;
        (left, Some(left))
    }
}

impl<T: Send + 'static> ExactSizeIterator for Batches<T> {}

impl<T> Drop for Batches<T> {
    fn drop(&mut self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }
}

/// Number of batches of `n` samples.
fn num_batches(n: usize, batch_size: usize, drop_last: bool) -> usize {
    if drop_last { n / batch_size } else { n.div_ceil(batch_size) }
}

/// Decodes `indices` in parallel on the current pool.
fn fetch(dataset: &dyn Dataset, indices: &[usize]) -> Result<Vec<Sample>> {
    indices.par_iter().map(|&i| dataset.get(i)).collect()
}

fn views_of(samples: &[Sample]) -> Result<Vec<RgbView<'_>>> {
    samples
        .iter()
        .map(|s| {
            RgbView::from_image(&s.image)
                .map_err(|source| DataError::Augment { sample: s.name.clone(), source })
        })
        .collect()
}

/// The pretraining loader: for each epoch, shuffled batches of two augmented views.
///
/// - Order: [`epoch_permutation`]`(len, seed, epoch)`, cut into batches of `batch_size`
///   (the last, short one dropped with `drop_last`).
/// - Views: sample `i` (a dataset index) gets views from `simsiam_augment::view_rng(seed,
///   epoch, i, v)` through the transform's batch API, so every batch is identical for any
///   number of workers, and a sample's views do not depend on the batch it falls in.
/// - Work: `workers` threads decode (`Dataset::get`) and augment, in parallel inside each batch
///   and across up to `prefetch` batches ahead of the consumer.
pub struct TwoViewLoader {
    dataset: Arc<dyn Dataset>,
    transform: Arc<dyn BatchTransform>,
    config: LoaderConfig,
    device: Device,
    engine: Engine,
}

impl std::fmt::Debug for TwoViewLoader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwoViewLoader")
            .field("len", &self.dataset.len())
            .field("config", &self.config)
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

impl TwoViewLoader {
    /// A loader over `dataset` applying `transform` (two views, e.g. a [`SimSiamTransform`]),
    /// putting tensors on `device`.
    ///
    /// # Errors
    /// [`DataError::Config`] for a zero batch size or prefetch, or a transform without exactly
    /// two views; [`DataError::Worker`] when the threads cannot start.
    pub fn new(
        dataset: Arc<dyn Dataset>,
        transform: impl BatchTransform + 'static,
        config: LoaderConfig,
        device: Device,
    ) -> Result<Self> {
        if config.batch_size == 0 {
            return Err(DataError::Config("batch_size must be at least 1".into()));
        }
        if transform.num_views() != 2 {
            return Err(DataError::Config(format!(
                "a two-view loader needs a transform with 2 views, got {}",
                transform.num_views()
            )));
        }
        let engine = Engine::new(config.workers, config.prefetch)?;
        Ok(Self { dataset, transform: Arc::new(transform), config, device, engine })
    }

    /// The configuration.
    pub fn config(&self) -> &LoaderConfig {
        &self.config
    }

    /// The dataset.
    pub fn dataset(&self) -> &Arc<dyn Dataset> {
        &self.dataset
    }

    /// Batches in each epoch.
    pub fn batches_per_epoch(&self) -> usize {
        num_batches(self.dataset.len(), self.config.batch_size, self.config.drop_last)
    }

    /// The batches of `epoch`, built ahead on the workers.
    pub fn epoch(&self, epoch: u64) -> Batches<TwoViewBatch> {
        let order = Arc::new(epoch_permutation(self.dataset.len(), self.config.seed, epoch));
        let (dataset, transform) = (self.dataset.clone(), self.transform.clone());
        let (bs, seed, device) = (self.config.batch_size, self.config.seed, self.device.clone());
        let job: Job<TwoViewBatch> = Arc::new(move |b| {
            let indices = order[b * bs..((b + 1) * bs).min(order.len())].to_vec();
            two_view_batch(&*dataset, &*transform, &indices, seed, epoch, &device)
        });
        self.engine.run(self.batches_per_epoch(), job)
    }
}

fn two_view_batch(
    dataset: &dyn Dataset,
    transform: &dyn BatchTransform,
    indices: &[usize],
    seed: u64,
    epoch: u64,
    device: &Device,
) -> Result<TwoViewBatch> {
    let samples = fetch(dataset, indices)?;
    let views = views_of(&samples)?;
    let keys: Vec<u64> = indices.iter().map(|&i| i as u64).collect();
    let [c, h, w] = transform.view_shape();
    let n = indices.len();
    let mut x0 = vec![0f32; 2 * n * c * h * w];
    transform.apply_batch_into(&views, &keys, seed, epoch, &mut x0).map_err(|source| {
        let first = samples.first().map_or_else(String::new, |s| s.name.clone());
        DataError::Augment { sample: format!("batch starting at {first}"), source }
    })?;
    let x1 = x0.split_off(n * c * h * w);
    Ok(TwoViewBatch {
        x0: Tensor::from_vec(x0, (n, c, h, w), device)?,
        x1: Tensor::from_vec(x1, (n, c, h, w), device)?,
        indices: indices.to_vec(),
    })
}

/// The deterministic preprocessing of [`EvalLoader`]: an optional resize (shorter side, as
/// torchvision's `Resize(int)`, antialiased bilinear), an optional centre crop (torchvision's
/// `CenterCrop`), then `ToTensor` and `Normalize`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvalTransform {
    /// Resize so that the shorter side has this length.
    pub resize: Option<u32>,
    /// Crop a centred square of this side (after the resize); it must fit the image.
    pub center_crop: Option<u32>,
    /// Normalisation after scaling to `[0, 1]`.
    pub normalization: Normalization,
}

impl EvalTransform {
    /// CIFAR-10: 32x32 images as they are, CIFAR-10 statistics.
    pub fn cifar10() -> Self {
        Self { resize: None, center_crop: None, normalization: Normalization::CIFAR10 }
    }

    /// ImageNet style: resize the shorter side to `size * 8 / 7` (256 for 224), crop `size`,
    /// ImageNet statistics.
    pub fn imagenet(size: u32) -> Self {
        Self { resize: Some(size * 8 / 7), center_crop: Some(size), normalization: Normalization::IMAGENET }
    }

    /// Resizes and crops `image` into `out` (planar `u8`).
    ///
    /// # Errors
    /// [`AugmentError`] for an empty image or a zero size; [`AugmentError::CropOutOfBounds`]
    /// when the crop does not fit.
    pub fn prepare(
        &self,
        image: &image::RgbImage,
        out: &mut ChwImage,
        ws: &mut Workspace,
    ) -> std::result::Result<(), AugmentError> {
        let src = RgbView::from_image(image)?;
        let (w, h) = (src.width(), src.height());
        let resized = match self.resize {
            Some(side) => {
                // torchvision: the shorter side becomes `side`, the longer one is truncated.
                let (nw, nh) = if w <= h {
                    (side, (u64::from(side) * u64::from(h) / u64::from(w)) as u32)
                } else {
                    ((u64::from(side) * u64::from(w) / u64::from(h)) as u32, side)
                };
                let mut tmp = ChwImage::new(1, 1)?;
                resized_crop(src, CropBox { top: 0, left: 0, height: h, width: w }, nw, nh, &mut tmp, ws)?;
                tmp
            }
            None => ChwImage::from_view(src),
        };
        match self.center_crop {
            Some(side) => center_crop(&resized, side, out),
            None => {
                *out = resized;
                Ok(())
            }
        }
    }
}

/// torchvision's `CenterCrop(side)` for an image at least `side` in both directions.
fn center_crop(src: &ChwImage, side: u32, out: &mut ChwImage) -> std::result::Result<(), AugmentError> {
    let (w, h) = (src.width(), src.height());
    let top = (f64::from(h.saturating_sub(side)) / 2.0).round_ties_even() as u32;
    let left = (f64::from(w.saturating_sub(side)) / 2.0).round_ties_even() as u32;
    CropBox { top, left, height: side, width: side }.check_inside(w, h)?;
    let mut dst = ChwImage::new(side, side)?;
    let (s, w) = (side as usize, w as usize);
    for (plane, out_plane) in src.planes().into_iter().zip(dst.planes_mut()) {
        for (y, row) in out_plane.chunks_exact_mut(s).enumerate() {
            let start = (top as usize + y) * w + left as usize;
            row.copy_from_slice(&plane[start..start + s]);
        }
    }
    *out = dst;
    Ok(())
}

/// Settings of [`EvalLoader`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalConfig {
    /// Images per batch; the last batch may be shorter (256).
    pub batch_size: usize,
    /// Worker threads, as [`LoaderConfig::workers`].
    pub workers: usize,
    /// Batches built ahead, as [`LoaderConfig::prefetch`] (4).
    pub prefetch: usize,
}

impl Default for EvalConfig {
    fn default() -> Self {
        let LoaderConfig { batch_size, workers, prefetch, .. } = LoaderConfig::default();
        Self { batch_size, workers, prefetch }
    }
}

/// A batch of preprocessed images with their labels and names.
#[derive(Debug, Clone)]
pub struct EvalBatch {
    /// Images, `[n, 3, H, W]`, `f32`, normalised.
    pub x: Tensor,
    /// Labels.
    pub labels: Vec<Option<usize>>,
    /// Sample names.
    pub names: Vec<String>,
    /// Dataset indices.
    pub indices: Vec<usize>,
}

/// The evaluation loader: every sample once, in dataset order, no augmentation (for
/// embeddings, kNN and linear evaluation).
pub struct EvalLoader {
    dataset: Arc<dyn Dataset>,
    transform: EvalTransform,
    config: EvalConfig,
    device: Device,
    engine: Engine,
    normalize: Arc<Normalize>,
}

impl std::fmt::Debug for EvalLoader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvalLoader")
            .field("len", &self.dataset.len())
            .field("transform", &self.transform)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl EvalLoader {
    /// A loader over `dataset`, preprocessing with `transform`, putting tensors on `device`.
    ///
    /// # Errors
    /// [`DataError::Config`] for a zero batch size, prefetch or size, or invalid statistics.
    pub fn new(
        dataset: Arc<dyn Dataset>,
        transform: EvalTransform,
        config: EvalConfig,
        device: Device,
    ) -> Result<Self> {
        if config.batch_size == 0 {
            return Err(DataError::Config("batch_size must be at least 1".into()));
        }
        if transform.resize == Some(0) || transform.center_crop == Some(0) {
            return Err(DataError::Config("resize and centre crop sizes must be positive".into()));
        }
        let normalize = Normalize::new(transform.normalization)
            .map_err(|e| DataError::Config(format!("normalisation: {e}")))?;
        let engine = Engine::new(config.workers, config.prefetch)?;
        Ok(Self { dataset, transform, config, device, engine, normalize: Arc::new(normalize) })
    }

    /// Number of batches (the last one may be short).
    pub fn num_batches(&self) -> usize {
        num_batches(self.dataset.len(), self.config.batch_size, false)
    }

    /// The dataset.
    pub fn dataset(&self) -> &Arc<dyn Dataset> {
        &self.dataset
    }

    /// All batches, in dataset order.
    pub fn batches(&self) -> Batches<EvalBatch> {
        let (dataset, transform, normalize) = (self.dataset.clone(), self.transform, self.normalize.clone());
        let (bs, len, device) = (self.config.batch_size, self.dataset.len(), self.device.clone());
        let job: Job<EvalBatch> = Arc::new(move |b| {
            let indices: Vec<usize> = (b * bs..((b + 1) * bs).min(len)).collect();
            eval_batch(&*dataset, &transform, &normalize, indices, &device)
        });
        self.engine.run(self.num_batches(), job)
    }
}

fn eval_batch(
    dataset: &dyn Dataset,
    transform: &EvalTransform,
    normalize: &Normalize,
    indices: Vec<usize>,
    device: &Device,
) -> Result<EvalBatch> {
    let prepared: Vec<(ChwImage, Sample)> = indices
        .par_iter()
        .map(|&i| {
            let sample = dataset.get(i)?;
            let mut img = ChwImage::default();
            transform
                .prepare(&sample.image, &mut img, &mut Workspace::new())
                .map_err(|source| DataError::Augment { sample: sample.name.clone(), source })?;
            Ok((img, sample))
        })
        .collect::<Result<_>>()?;
    let (w, h) = prepared.first().map_or((0, 0), |(img, _)| (img.width(), img.height()));
    if let Some((img, s)) = prepared.iter().find(|(img, _)| (img.width(), img.height()) != (w, h)) {
        return Err(DataError::ShapeMismatch {
            name: s.name.clone(),
            expected_w: w,
            expected_h: h,
            actual_w: img.width(),
            actual_h: img.height(),
        });
    }
    let len = 3 * w as usize * h as usize;
    let mut x = vec![0f32; prepared.len() * len];
    x.par_chunks_mut(len.max(1)).zip(&prepared).try_for_each(|(out, (img, s))| {
        normalize.apply(img, out).map_err(|source| DataError::Augment { sample: s.name.clone(), source })
    })?;
    let n = prepared.len();
    let (labels, names) = prepared.into_iter().map(|(_, s)| (s.label, s.name)).unzip();
    Ok(EvalBatch { x: Tensor::from_vec(x, (n, 3, h as usize, w as usize), device)?, labels, names, indices })
}
