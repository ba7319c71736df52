//! Linear evaluation as the official SimSiam code does it (`main_lincls.py --lars`): a frozen
//! backbone in evaluation mode, new augmented crops every epoch (no cached features), only
//! `fc` trained, with LARS at `lr = base_lr * batch / 256` and a cosine decay per epoch.

use candle::{DType, ModuleT, Tensor};
use candle_nn::loss::cross_entropy;
use simsiam_augment::{
    Compose, MultiViewTransform, Normalization, Normalize, RandomHorizontalFlip, RandomResizedCrop,
    ViewTransform,
};
use simsiam_data::{EvalLoader, LabelledLoader};
use simsiam_models::Backbone;

use super::LinearEvalResult;
use super::classifier::LinearClassifier;
use crate::knn::accuracy;
use crate::{CosineSchedule, Lars, LarsConfig, Result, TrainError, scaled_lr};

/// The paper protocol's settings; the defaults are the SimSiam paper's (Appendix A): 90
/// epochs, batch 4096, base lr 0.02 scaled by `batch / 256`, LARS with momentum 0.9, weight
/// decay 0 and trust coefficient 0.001.
#[derive(Debug, Clone, PartialEq)]
pub struct PaperLinearConfig {
    /// Epochs over the training images, each with new crops.
    pub epochs: usize,
    /// Images per step.
    pub batch_size: usize,
    /// The base learning rate; the initial one is `base_lr * batch_size / 256`.
    pub base_lr: f64,
    /// The optimiser's settings.
    pub lars: LarsConfig,
    /// Seed of the classifier's initialisation (the crops and order take the loader's seed).
    pub seed: u64,
}

impl Default for PaperLinearConfig {
    fn default() -> Self {
        Self { epochs: 90, batch_size: 4096, base_lr: 0.02, lars: LarsConfig::default(), seed: 0 }
    }
}

impl PaperLinearConfig {
    /// `main_lincls.py`'s `init_lr`: the linear scaling rule on the base rate.
    pub fn init_lr(&self) -> f64 {
        scaled_lr(self.base_lr, self.batch_size)
    }

    /// The learning rate of `epoch` (0-based), set at its start as `adjust_learning_rate`
    /// sets it: `init_lr * 0.5 * (1 + cos(pi * epoch / epochs))`.
    pub fn lr(&self, epoch: usize) -> Result<f64> {
        Ok(CosineSchedule::new(self.init_lr(), self.epochs)?.lr(epoch))
    }

    fn validate(&self) -> Result<()> {
        if self.epochs == 0 || self.batch_size == 0 || !(self.base_lr > 0.0 && self.base_lr.is_finite()) {
            return Err(TrainError::Config(format!(
                "paper linear evaluation needs epochs, batch size and base lr above 0, got {self:?}"
            )));
        }
        Ok(())
    }
}

/// The training images' augmentation of `main_lincls.py`: `RandomResizedCrop(size)` (scale
/// 0.08 to 1, ratio 3/4 to 4/3, antialiased bilinear), `RandomHorizontalFlip()`, then
/// normalisation; one view, for [`LabelledLoader`].
pub fn paper_train_transform(size: u32, normalization: Normalization) -> Result<MultiViewTransform> {
    let augment = |e: simsiam_augment::AugmentError| TrainError::Config(format!("paper augmentation: {e}"));
    let crop = RandomResizedCrop::square(size, 0.08).map_err(augment)?;
    let flip = RandomHorizontalFlip::new(0.5).map_err(augment)?;
    let normalize = Normalize::new(normalization).map_err(augment)?;
    MultiViewTransform::new(vec![ViewTransform::new(crop, Compose::default().then(flip), normalize)])
        .map_err(augment)
}

/// Images per backbone forward. Candle records the forward's ops (the backbone's weights are
/// variables), which keeps every activation of a pass alive until its features are detached;
/// PyTorch, with `requires_grad=False`, frees them as it goes. A 4096-image batch goes through
/// in pieces so that memory stays that of 256 images.
const FEATURE_CHUNK: usize = 256;

/// What one training epoch did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PaperEpoch {
    /// The epoch (0-based).
    pub epoch: usize,
    /// Its learning rate.
    pub lr: f64,
    /// Mean cross-entropy over its samples.
    pub loss: f64,
    /// Top-1 accuracy on its (augmented) training crops.
    pub top1: f64,
    /// Samples seen.
    pub samples: usize,
}

/// Trains `fc` on a frozen backbone, batch by batch: the part of the protocol that takes
/// already augmented images, which the CLI and the golden test share.
///
/// The backbone runs in evaluation mode (`model.eval()` in `main_lincls.py` during training
/// too): batch norm uses and keeps its running statistics, and the features are detached, so
/// no gradient reaches the backbone.
#[derive(Debug)]
pub struct PaperLinearTrainer<'a, M: ?Sized> {
    backbone: &'a M,
    classifier: LinearClassifier,
    lars: Lars,
    config: PaperLinearConfig,
}

impl<'a, M: ModuleT + Sync + ?Sized> PaperLinearTrainer<'a, M> {
    /// A trainer of `classifier` on `backbone`'s features.
    pub fn new(backbone: &'a M, classifier: LinearClassifier, config: PaperLinearConfig) -> Result<Self> {
        config.validate()?;
        let lars = Lars::new(classifier.params(), config.init_lr(), config.lars)?;
        Ok(Self { backbone, classifier, lars, config })
    }

    /// The classifier as trained so far.
    pub fn classifier(&self) -> &LinearClassifier {
        &self.classifier
    }

    /// The frozen backbone's features: evaluation mode, detached, f32, computed 256 images
    /// at a time (evaluation mode treats images independently, so
    /// the features are those of one pass).
    ///
    /// # Shapes
    /// - `images`: `[n, 3, h, w]`; returns `[n, feature_dim]`
    pub fn features(&self, images: &Tensor) -> Result<Tensor> {
        let n = images.dim(0)?;
        // On candle's compute pool, as a training step (`Stepper::step` says why).
        let chunks = images.device().with_context(|| {
            (0..n)
                .step_by(FEATURE_CHUNK)
                .map(|start| {
                    let x = images.narrow(0, start, FEATURE_CHUNK.min(n - start))?;
                    Ok(self.backbone.forward_t(&x, false)?.detach().to_dtype(DType::F32)?)
                })
                .collect::<Result<Vec<_>>>()
        })?;
        Ok(Tensor::cat(&chunks, 0)?)
    }

    /// One epoch over `batches` of augmented images and labels, at [`PaperLinearConfig::lr`]
    /// of `epoch`: a LARS step per batch on the batch's mean cross-entropy.
    pub fn train_epoch<I>(&mut self, epoch: usize, batches: I) -> Result<PaperEpoch>
    where
        I: IntoIterator<Item = Result<(Tensor, Vec<usize>)>>,
    {
        let lr = self.config.lr(epoch)?;
        self.lars.set_lr(lr)?;
        let (mut loss_sum, mut correct, mut samples) = (0.0, 0usize, 0usize);
        for batch in batches {
            let (images, labels) = batch?;
            let n = labels.len();
            if images.dim(0)? != n || n == 0 {
                return Err(TrainError::Config(format!(
                    "a batch of {} images has {n} labels",
                    images.dim(0)?
                )));
            }
            let targets = self.targets(&labels, images.device())?;
            let logits = self.classifier.forward(&self.features(&images)?)?;
            let loss = cross_entropy(&logits, &targets)?;
            self.lars.step(&loss.backward()?)?;
            loss_sum += loss.to_scalar::<f32>()? as f64 * n as f64;
            let predicted: Vec<u32> = logits.argmax(1)?.to_vec1()?;
            correct += predicted.iter().zip(&labels).filter(|&(&p, &l)| p as usize == l).count();
            samples += n;
        }
        if samples == 0 {
            return Err(TrainError::Config(format!("epoch {epoch} of linear evaluation had no batches")));
        }
        let m = samples as f64;
        Ok(PaperEpoch { epoch, lr, loss: loss_sum / m, top1: correct as f64 / m, samples })
    }

    /// Top-1 and top-5 accuracy of the classifier on `batches` of preprocessed images.
    pub fn evaluate<I>(&self, batches: I) -> Result<LinearEvalResult>
    where
        I: IntoIterator<Item = Result<(Tensor, Vec<usize>)>>,
    {
        let (mut scores, mut all_labels) = (Vec::new(), Vec::new());
        for batch in batches {
            let (images, labels) = batch?;
            self.targets(&labels, images.device())?;
            let logits = self.classifier.forward(&self.features(&images)?)?;
            scores.extend(logits.to_device(&candle::Device::Cpu)?.to_vec2::<f32>()?);
            all_labels.extend(labels);
        }
        if scores.is_empty() {
            return Err(TrainError::Config("no test images for linear evaluation".into()));
        }
        let r = accuracy(&scores, &all_labels);
        Ok(LinearEvalResult { top1: r.top1, top5: r.top5 })
    }

    /// The labels as a `u32` tensor, checked against the number of classes.
    fn targets(&self, labels: &[usize], device: &candle::Device) -> Result<Tensor> {
        let classes = self.classifier.classes();
        if let Some(l) = labels.iter().find(|&&l| l >= classes) {
            return Err(TrainError::Config(format!("label {l} is not below {classes} classes")));
        }
        Ok(Tensor::from_vec(labels.iter().map(|&l| l as u32).collect::<Vec<_>>(), labels.len(), device)?)
    }
}

/// The labels of a batch, or an error naming the first sample without one.
fn required<T>(labels: Vec<Option<usize>>, names: impl Fn(usize) -> T) -> Result<Vec<usize>>
where
    T: std::fmt::Display,
{
    labels
        .into_iter()
        .enumerate()
        .map(|(i, l)| l.ok_or_else(|| TrainError::Config(format!("sample {} has no label", names(i)))))
        .collect()
}

/// The whole protocol: `fc` (from `config.seed`) trained for `config.epochs` on `train`'s
/// augmented batches through the frozen `backbone`, then evaluated on `test`. `on_epoch` hears
/// about every epoch as it ends (for progress lines; the library prints nothing).
///
/// `train` should be a [`LabelledLoader`] with [`paper_train_transform`], batch size
/// `config.batch_size` and `drop_last` false; `test` an [`EvalLoader`] with the evaluation
/// preprocessing.
pub fn paper_linear_eval<B: Backbone + ?Sized>(
    backbone: &B,
    train: &LabelledLoader,
    test: &EvalLoader,
    classes: usize,
    config: &PaperLinearConfig,
    mut on_epoch: impl FnMut(&PaperEpoch),
) -> Result<LinearEvalResult> {
    if train.config().batch_size != config.batch_size {
        return Err(TrainError::Config(format!(
            "the loader's batch size {} is not the protocol's {}",
            train.config().batch_size,
            config.batch_size
        )));
    }
    let classifier = LinearClassifier::new(backbone.feature_dim(), classes, config.seed, train.device())?;
    let mut trainer = PaperLinearTrainer::new(backbone, classifier, config.clone())?;
    for epoch in 0..config.epochs {
        let batches = train.epoch(epoch as u64).map(|b| {
            let b = b?;
            let indices = b.indices;
            Ok((b.x, required(b.labels, |i| format!("#{}", indices[i]))?))
        });
        on_epoch(&trainer.train_epoch(epoch, batches)?);
    }
    trainer.evaluate(test.batches().map(|b| {
        let b = b?;
        let names = b.names;
        Ok((b.x, required(b.labels, |i| format!("`{}`", names[i]))?))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lr_is_scaled_by_the_batch_and_decays_per_epoch() -> Result<()> {
        let config = PaperLinearConfig::default();
        // The paper's 0.02 at batch 4096: 0.32.
        assert!((config.init_lr() - 0.32).abs() < 1e-15);
        assert_eq!(config.lr(0)?, config.init_lr());
        assert!((config.lr(45)? - 0.16).abs() < 1e-12);
        let e = 30.0 / 90.0 * std::f64::consts::PI;
        assert!((config.lr(30)? - 0.32 * 0.5 * (1.0 + e.cos())).abs() < 1e-15);
        assert!(config.lr(89)? > 0.0 && config.lr(89)? < 1e-4);
        let small = PaperLinearConfig { batch_size: 256, base_lr: 0.1, epochs: 10, ..config };
        assert!((small.lr(0)? - 0.1).abs() < 1e-15 && (small.lr(5)? - 0.05).abs() < 1e-15);
        assert!(PaperLinearConfig { epochs: 0, ..PaperLinearConfig::default() }.validate().is_err());
        Ok(())
    }

    /// A "backbone" that hands its input on as features.
    struct Identity;

    impl ModuleT for Identity {
        fn forward_t(&self, x: &Tensor, _train: bool) -> candle::Result<Tensor> {
            x.flatten_from(1)
        }
    }

    /// Four classes, each a bump on its own feature, with seeded noise.
    fn separable(n: usize, seed: u64) -> Result<(Tensor, Vec<usize>)> {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let labels: Vec<usize> = (0..n).map(|i| i % 4).collect();
        let data: Vec<f32> = labels
            .iter()
            .flat_map(|&l| (0..6).map(move |j| if j == l { 2.0 } else { 0.0 }))
            .map(|v| v + rng.random::<f32>() - 0.5)
            .collect();
        Ok((Tensor::from_vec(data, (n, 6), &candle::Device::Cpu)?, labels))
    }

    #[test]
    fn the_trainer_learns_separable_classes_and_checks_labels() -> Result<()> {
        let (train, train_labels) = separable(128, 1)?;
        let (test, test_labels) = separable(64, 2)?;
        // LARS moves each tensor by lr * 0.001 of its norm a step: a large lr for a quick test.
        let config = PaperLinearConfig { epochs: 15, batch_size: 32, base_lr: 800.0, ..Default::default() };
        let fc = LinearClassifier::new(6, 4, 0, &candle::Device::Cpu)?;
        let mut trainer = PaperLinearTrainer::new(&Identity, fc, config)?;
        let batches = |x: &Tensor, labels: &[usize]| -> Vec<Result<(Tensor, Vec<usize>)>> {
            (0..x.dim(0).unwrap_or(0))
                .step_by(32)
                .map(|s| Ok((x.narrow(0, s, 32)?, labels[s..s + 32].to_vec())))
                .collect()
        };
        let first = trainer.train_epoch(0, batches(&train, &train_labels))?;
        let mut last = first;
        for epoch in 1..15 {
            last = trainer.train_epoch(epoch, batches(&train, &train_labels))?;
        }
        assert!(last.loss < first.loss && last.top1 > 0.9, "{first:?} -> {last:?}");
        let r = trainer.evaluate(batches(&test, &test_labels))?;
        assert!(r.top1 > 0.9 && r.top5 == 1.0, "{r:?}");
        let bad = vec![Ok((train.narrow(0, 0, 2)?, vec![0, 4]))];
        assert!(trainer.evaluate(bad).is_err(), "label 4 of 4 classes");
        let short = vec![Ok((train.narrow(0, 0, 2)?, vec![0]))];
        assert!(trainer.train_epoch(15, short).is_err(), "2 images, 1 label");
        Ok(())
    }

    #[test]
    fn features_of_a_large_batch_come_in_order_from_chunks() -> Result<()> {
        let n = 2 * FEATURE_CHUNK + 3;
        let x = Tensor::arange(0f32, (n * 2) as f32, &candle::Device::Cpu)?.reshape((n, 2, 1, 1))?;
        let fc = LinearClassifier::new(2, 3, 0, &candle::Device::Cpu)?;
        let trainer = PaperLinearTrainer::new(&Identity, fc, PaperLinearConfig::default())?;
        let f = trainer.features(&x)?;
        assert_eq!(f.dims(), [n, 2]);
        assert_eq!(f.flatten_all()?.to_vec1::<f32>()?, x.flatten_all()?.to_vec1::<f32>()?);
        Ok(())
    }

    #[test]
    fn the_train_transform_is_one_crop_and_flip_view() -> Result<()> {
        let t = paper_train_transform(24, Normalization::IMAGENET)?;
        assert_eq!((t.num_views(), t.view_shape()), (1, [3, 24, 24]));
        assert!(paper_train_transform(0, Normalization::IMAGENET).is_err());
        Ok(())
    }
}
