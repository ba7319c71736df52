//! The `Dataset` trait, its sample type, and the `Subset` wrapper.

use std::sync::Arc;

use crate::error::{DataError, Result};

/// One image with its label and name.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The decoded image, interleaved RGB.
    pub image: image::RgbImage,
    /// The class index, when the dataset has labels.
    pub label: Option<usize>,
    /// A stable name: the relative file name for folders, `train/00042` for CIFAR.
    pub name: String,
}

/// A random-access collection of images, shared between loader threads.
///
/// `get` may do real work (decoding a JPEG): loaders call it on their worker threads.
pub trait Dataset: Send + Sync {
    /// Number of samples.
    fn len(&self) -> usize;

    /// `true` when there are no samples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sample `index`.
    ///
    /// # Errors
    /// [`DataError::IndexOutOfRange`] past the end; a decoding error naming the file.
    fn get(&self, index: usize) -> Result<Sample>;
}

impl<D: Dataset + ?Sized> Dataset for Arc<D> {
    fn len(&self) -> usize {
        (**self).len()
    }

    fn get(&self, index: usize) -> Result<Sample> {
        (**self).get(index)
    }
}

impl<D: Dataset + ?Sized> Dataset for Box<D> {
    fn len(&self) -> usize {
        (**self).len()
    }

    fn get(&self, index: usize) -> Result<Sample> {
        (**self).get(index)
    }
}

/// `Err(IndexOutOfRange)` unless `index < len`.
pub(crate) fn check_index(index: usize, len: usize) -> Result<()> {
    if index < len { Ok(()) } else { Err(DataError::IndexOutOfRange { index, len }) }
}

/// The epoch slot of the generator that picks [`Subset::random`]'s samples.
const SUBSET_EPOCH: u64 = u64::MAX;

/// A dataset restricted to some of its samples, in a given order (burn's `PartialDataset`,
/// PyTorch's `Subset`): sample `i` of the subset is sample `indices[i]` of the inner dataset.
#[derive(Debug, Clone)]
pub struct Subset<D> {
    inner: D,
    indices: Vec<usize>,
}

impl<D: Dataset> Subset<D> {
    /// The samples `indices` of `inner`.
    ///
    /// # Errors
    /// [`DataError::IndexOutOfRange`] for an index past the end of `inner`.
    pub fn new(inner: D, indices: Vec<usize>) -> Result<Self> {
        let len = inner.len();
        if let Some(&index) = indices.iter().find(|&&i| i >= len) {
            return Err(DataError::IndexOutOfRange { index, len });
        }
        Ok(Self { inner, indices })
    }

    /// The first `n` samples of `inner` (all of them when it has fewer): a quick try on a small
    /// part of a dataset.
    pub fn take(inner: D, n: usize) -> Self {
        let indices = (0..n.min(inner.len())).collect();
        Self { inner, indices }
    }

    /// `n` samples of `inner` drawn at random without replacement (all of them when it has
    /// fewer), kept in `inner`'s order: a quick try that still sees every class of a
    /// class-per-folder dataset. The same `(seed, stream)` picks the same samples; `stream`
    /// keeps the picks of two splits (train, test) of one run apart.
    pub fn random(inner: D, n: usize, seed: u64, stream: u64) -> Self {
        let len = inner.len();
        let mut indices: Vec<usize> = (0..len).collect();
        if n < len {
            // One shuffle serves every seeded order; this epoch number is never trained.
            let mut rng = simsiam_augment::rng::sample_rng(seed, SUBSET_EPOCH, stream);
            simsiam_augment::rng::shuffle(&mut indices, &mut rng);
            indices.truncate(n);
            indices.sort_unstable();
        }
        Self { inner, indices }
    }

    /// The wrapped dataset.
    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// The inner indices, in subset order.
    pub fn indices(&self) -> &[usize] {
        &self.indices
    }
}

impl<D: Dataset> Dataset for Subset<D> {
    fn len(&self) -> usize {
        self.indices.len()
    }

    fn get(&self, index: usize) -> Result<Sample> {
        check_index(index, self.indices.len())?;
        self.inner.get(self.indices[index])
    }
}

/// Builder-style wrappers for every dataset.
pub trait DatasetExt: Dataset + Sized {
    /// The first `n` samples; see [`Subset::take`].
    fn take(self, n: usize) -> Subset<Self> {
        Subset::take(self, n)
    }

    /// `n` random samples, seeded; see [`Subset::random`].
    fn random_subset(self, n: usize, seed: u64, stream: u64) -> Subset<Self> {
        Subset::random(self, n, seed, stream)
    }

    /// The samples `indices`; see [`Subset::new`].
    ///
    /// # Errors
    /// As [`Subset::new`].
    fn subset(self, indices: Vec<usize>) -> Result<Subset<Self>> {
        Subset::new(self, indices)
    }
}

impl<D: Dataset + Sized> DatasetExt for D {}

#[cfg(test)]
mod tests {
    use super::*;

    struct Numbers(usize);

    impl Dataset for Numbers {
        fn len(&self) -> usize {
            self.0
        }

        fn get(&self, index: usize) -> Result<Sample> {
            check_index(index, self.0)?;
            Ok(Sample { image: image::RgbImage::new(1, 1), label: Some(index), name: index.to_string() })
        }
    }

    #[test]
    fn subset_maps_indices() {
        let s = Numbers(10).subset(vec![7, 2]).expect("in range");
        assert_eq!(s.len(), 2);
        assert_eq!(s.get(0).expect("ok").label, Some(7));
        assert_eq!(s.get(1).expect("ok").name, "2");
        assert!(matches!(s.get(2), Err(DataError::IndexOutOfRange { index: 2, len: 2 })));
        assert!(Numbers(3).subset(vec![3]).is_err());
    }

    #[test]
    fn random_subsets_are_seeded_spread_and_sorted() {
        let a = Numbers(1000).random_subset(50, 3, 0);
        assert_eq!(a.len(), 50);
        assert_eq!(a.indices(), Numbers(1000).random_subset(50, 3, 0).indices());
        assert_ne!(a.indices(), Numbers(1000).random_subset(50, 4, 0).indices());
        assert_ne!(a.indices(), Numbers(1000).random_subset(50, 3, 1).indices());
        assert!(a.indices().windows(2).all(|w| w[0] < w[1]), "sorted, no repeats");
        // Not the first 50: the picks reach the far end of the dataset.
        assert!(*a.indices().last().expect("some") > 500, "{:?}", a.indices());
        // Ten classes of 100 consecutive samples each (a class-per-folder dataset in sorted
        // order): 50 random picks see all ten, the first 50 would see one.
        let classes: std::collections::BTreeSet<usize> = a.indices().iter().map(|i| i / 100).collect();
        assert_eq!(classes.len(), 10);
        assert_eq!(Numbers(5).random_subset(9, 0, 0).indices(), [0, 1, 2, 3, 4]);
        assert_eq!(a.get(0).expect("ok").label, Some(a.indices()[0]));
    }

    #[test]
    fn take_clamps() {
        assert_eq!(Numbers(10).take(4).len(), 4);
        assert_eq!(Numbers(3).take(100).len(), 3);
        let shared: Arc<dyn Dataset> = Arc::new(Numbers(5));
        let t = shared.take(2);
        assert_eq!(t.get(1).expect("ok").label, Some(1));
        assert!(Numbers(0).is_empty());
    }
}
