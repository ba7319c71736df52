//! `simsiam-data`'s loaders as the trainer's batch source and kNN monitor.

use simsiam_data::{EvalLoader, TwoViewLoader};
use simsiam_models::{Backbone, SimSiam};

use crate::{
    EpochBatches, Features, KnnConfig, KnnMonitor, KnnResult, ProbeTestSet, Result, TwoViewBatches, ViewPair,
    extract_features, knn_classify,
};

impl TwoViewBatches for TwoViewLoader {
    fn batches_per_epoch(&self) -> usize {
        TwoViewLoader::batches_per_epoch(self)
    }

    fn batch_size(&self) -> usize {
        self.config().batch_size
    }

    fn batches(&self, epoch: u64, skip: usize) -> Result<EpochBatches<'_>> {
        // The loader is seeded per (seed, epoch, index), so skipped batches are the ones a
        // resumed run already trained on.
        let batches = self
            .epoch(epoch)
            .skip(skip)
            .map(|b| Ok(b.map(|b| ViewPair { x0: b.x0, x1: b.x1, labels: b.labels })?));
        Ok(Box::new(batches))
    }
}

/// Backbone features of every sample of `loader`, in its order.
pub fn loader_features<M: candle::ModuleT + Sync + ?Sized>(
    backbone: &M,
    loader: &EvalLoader,
) -> Result<Features> {
    extract_features(backbone, loader.batches().map(|b| Ok(b.map(|b| (b.x, b.labels, b.names))?)))
}

/// Weighted kNN accuracy of `backbone`: features of `train` (the memory bank, loaded without
/// augmentation) and of `test`, then [`knn_classify`].
pub fn knn_evaluate<M: candle::ModuleT + Sync + ?Sized>(
    backbone: &M,
    train: &EvalLoader,
    test: &EvalLoader,
    classes: usize,
    config: &KnnConfig,
) -> Result<KnnResult> {
    let bank = loader_features(backbone, train)?;
    let queries = loader_features(backbone, test)?;
    knn_classify(
        &bank.features,
        &bank.required_labels()?,
        &queries.features,
        &queries.required_labels()?,
        classes,
        config,
    )
}

/// The test set of an online probe: the backbone's features of `test`'s images (evaluation
/// transform, backbone in evaluation mode) after every epoch.
pub fn probe_test_set<B: Backbone + 'static>(test: EvalLoader) -> ProbeTestSet<B> {
    Box::new(move |model: &SimSiam<B>| loader_features(model.backbone(), &test))
}

/// A kNN monitor: [`knn_evaluate`]'s top-1 accuracy of the model's backbone.
pub fn knn_monitor<B: Backbone + 'static>(
    train: EvalLoader,
    test: EvalLoader,
    classes: usize,
    config: KnnConfig,
) -> KnnMonitor<B> {
    Box::new(move |model: &SimSiam<B>| {
        Ok(knn_evaluate(model.backbone(), &train, &test, classes, &config)?.top1)
    })
}
