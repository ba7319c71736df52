//! An online linear probe, as Lightly's `OnlineLinearClassifier`
//! (`lightly/utils/benchmarking/online_linear_classifier.py`): a linear layer on the detached
//! backbone features of both views (the labels repeated, as Lightly's benchmark `simsiam.py`),
//! trained with cross-entropy on the images' classes in the same optimiser step as the model,
//! in a parameter group of its own without weight decay. Its accuracy says, while pretraining runs, how linearly separable the features are.

use candle::{DType, Device, Module, Tensor, Var};
use candle_nn::{Linear, VarMap};

use crate::{Result, TrainError};

/// The prefix of the probe's tensors in checkpoints and of its parameters in the optimiser
/// (Lightly's attribute name).
pub const PROBE_PREFIX: &str = "online_classifier.";

/// Top-1 and top-5 accuracy, each in `[0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TopK {
    /// Share of samples whose class has the highest score.
    pub top1: f64,
    /// Share of samples whose class is among the five highest scores (all of them with fewer
    /// than five classes).
    pub top5: f64,
}

/// Counts of correct predictions, for a running accuracy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Hits {
    top1: usize,
    top5: usize,
    seen: usize,
}

impl Hits {
    fn add(&mut self, other: Hits) {
        self.top1 += other.top1;
        self.top5 += other.top5;
        self.seen += other.seen;
    }

    fn accuracy(&self) -> Option<TopK> {
        (self.seen > 0).then(|| TopK {
            top1: self.top1 as f64 / self.seen as f64,
            top5: self.top5 as f64 / self.seen as f64,
        })
    }
}

/// The linear probe `Linear(feature_dim, classes)` under `classification_head.weight` and
/// `.bias` in its own [`VarMap`] (`online_classifier.classification_head.*` in checkpoints),
/// and its running training accuracy.
pub struct OnlineProbe {
    varmap: VarMap,
    head: Linear,
    feature_dim: usize,
    classes: usize,
    train: Hits,
}

impl std::fmt::Debug for OnlineProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnlineProbe")
            .field("feature_dim", &self.feature_dim)
            .field("classes", &self.classes)
            .field("train", &self.train)
            .finish_non_exhaustive()
    }
}

impl OnlineProbe {
    /// A probe from `feature_dim` features to `classes` classes on `device`, initialised as
    /// `torch.nn.Linear` from the run's `seed` (our own seeded generator, so a run repeats).
    pub fn new(feature_dim: usize, classes: usize, seed: u64, device: &Device) -> Result<Self> {
        if feature_dim == 0 || classes < 2 {
            return Err(TrainError::Config(format!(
                "an online probe needs features and at least 2 classes, got {feature_dim} features and {classes} classes"
            )));
        }
        let varmap = VarMap::new();
        let vb = simsiam_models::seeded_var_builder(&varmap, seed, DType::F32, device);
        let head = simsiam_models::linear(feature_dim, classes, true, vb.pp("classification_head"))?;
        Ok(Self { varmap, head, feature_dim, classes, train: Hits::default() })
    }

    /// The probe's variables, under their names without [`PROBE_PREFIX`].
    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    /// The input dimension.
    pub fn feature_dim(&self) -> usize {
        self.feature_dim
    }

    /// The number of classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// The parameters, named with [`PROBE_PREFIX`], sorted by name: the optimiser's group.
    pub fn params(&self) -> Result<Vec<(String, Var)>> {
        let vars = self.varmap.data().lock().map_err(|_| TrainError::Config("poisoned VarMap".into()))?;
        let mut params: Vec<(String, Var)> =
            vars.iter().map(|(n, v)| (format!("{PROBE_PREFIX}{n}"), v.clone())).collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(params)
    }

    /// The class scores of `features`, detached first so that no gradient reaches the network
    /// that made them.
    ///
    /// # Shapes
    /// - `features`: `[batch, feature_dim]`
    /// - returns `[batch, classes]`, f32
    pub fn logits(&self, features: &Tensor) -> Result<Tensor> {
        let x = features.detach().flatten_from(1)?.to_dtype(DType::F32)?;
        Ok(self.head.forward(&x)?)
    }

    /// The cross-entropy of the probe on `features` (detached) against `labels` (one per row;
    /// rows without a label are left out), and the batch's hits added to the running training
    /// accuracy. `None` when no row has a label.
    pub fn training_loss(&mut self, features: &Tensor, labels: &[Option<usize>]) -> Result<Option<Tensor>> {
        let rows: Vec<u32> =
            labels.iter().enumerate().filter(|(_, l)| l.is_some()).map(|(i, _)| i as u32).collect();
        if rows.is_empty() {
            return Ok(None);
        }
        let targets: Vec<usize> = labels.iter().flatten().copied().collect();
        self.check_labels(&targets)?;
        let n = features.dim(0)?;
        if labels.len() != n {
            return Err(TrainError::Config(format!("{} labels for a batch of {n} features", labels.len())));
        }
        let features = if rows.len() == n {
            features.clone()
        } else {
            features.index_select(&Tensor::new(rows.as_slice(), features.device())?, 0)?
        };
        let logits = self.logits(&features)?;
        self.train.add(hits(&logits, &targets)?);
        let t: Vec<u32> = targets.iter().map(|&t| t as u32).collect();
        let t = Tensor::new(t.as_slice(), logits.device())?;
        Ok(Some(candle_nn::loss::cross_entropy(&logits, &t)?))
    }

    /// The running training accuracy since the last [`Self::reset_train_accuracy`]; `None`
    /// before any labelled batch.
    pub fn train_accuracy(&self) -> Option<TopK> {
        self.train.accuracy()
    }

    /// Starts the running training accuracy afresh (at each epoch).
    pub fn reset_train_accuracy(&mut self) {
        self.train = Hits::default();
    }

    /// The accuracy on `features` (of evaluation images, backbone in evaluation mode) with
    /// their `labels`, in chunks of 1024 rows.
    pub fn evaluate(&self, features: &Tensor, labels: &[usize]) -> Result<TopK> {
        let n = features.dim(0)?;
        if labels.len() != n || n == 0 {
            return Err(TrainError::Config(format!("{} labels for {n} features", labels.len())));
        }
        self.check_labels(labels)?;
        let mut total = Hits::default();
        for start in (0..n).step_by(1024) {
            let len = 1024.min(n - start);
            let logits = self.logits(&features.narrow(0, start, len)?)?;
            total.add(hits(&logits, &labels[start..start + len])?);
        }
        total.accuracy().ok_or_else(|| TrainError::Config("no sample to evaluate the probe on".into()))
    }

    fn check_labels(&self, labels: &[usize]) -> Result<()> {
        match labels.iter().find(|&&l| l >= self.classes) {
            Some(l) => Err(TrainError::Config(format!(
                "label {l} is out of range for an online probe of {} classes",
                self.classes
            ))),
            None => Ok(()),
        }
    }
}

/// Top-1 and top-5 hits of `logits` (`[n, classes]`) against `targets`: a sample's rank is
/// the number of classes scored strictly above its own.
fn hits(logits: &Tensor, targets: &[usize]) -> Result<Hits> {
    let scores = logits.to_dtype(DType::F32)?.to_device(&Device::Cpu)?.to_vec2::<f32>()?;
    let mut out = Hits { seen: targets.len(), ..Hits::default() };
    for (row, &t) in scores.iter().zip(targets) {
        let own = row[t];
        let above = row.iter().filter(|&&s| s > own).count();
        out.top1 += usize::from(above < 1);
        out.top5 += usize::from(above < 5);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_count_ranks_strictly_above_the_target() -> Result<()> {
        let logits = Tensor::new(
            &[[0.9f32, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6]],
            &Device::Cpu,
        )?;
        let h = hits(&logits, &[0, 1])?;
        // Row 0: class 0 first. Row 1: class 1 has five scores above it.
        assert_eq!(h, Hits { top1: 1, top5: 1, seen: 2 });
        assert_eq!(h.accuracy(), Some(TopK { top1: 0.5, top5: 0.5 }));
        Ok(())
    }

    #[test]
    fn unlabelled_rows_are_left_out_and_bad_labels_refused() -> Result<()> {
        let mut probe = OnlineProbe::new(4, 3, 1, &Device::Cpu)?;
        let f = Tensor::ones((2, 4), DType::F32, &Device::Cpu)?;
        assert!(probe.training_loss(&f, &[None, None])?.is_none());
        assert_eq!(probe.train_accuracy(), None);
        let loss = probe.training_loss(&f, &[Some(2), None])?.expect("one labelled row");
        assert_eq!(loss.dims(), [0usize; 0]);
        assert_eq!(probe.train_accuracy().map(|a| a.top5), Some(1.0), "3 classes: all in the top 5");
        assert!(probe.training_loss(&f, &[Some(3), None]).is_err());
        assert_eq!(
            probe.params()?.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            ["online_classifier.classification_head.bias", "online_classifier.classification_head.weight"]
        );
        Ok(())
    }
}
