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
    fn take_clamps() {
        assert_eq!(Numbers(10).take(4).len(), 4);
        assert_eq!(Numbers(3).take(100).len(), 3);
        let shared: Arc<dyn Dataset> = Arc::new(Numbers(5));
        let t = shared.take(2);
        assert_eq!(t.get(1).expect("ok").label, Some(1));
        assert!(Numbers(0).is_empty());
    }
}
