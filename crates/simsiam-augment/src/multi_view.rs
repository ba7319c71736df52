//! Several views of each image, and the parallel batch API.

use std::cell::RefCell;

use rayon::prelude::*;

use crate::error::{AugmentError, Result};
use crate::rgb_view::RgbView;
use crate::rng::{ChaCha8Rng, view_rng};
use crate::view::ViewTransform;
use crate::workspace::Workspace;

thread_local! {
    /// One workspace per thread, reused across images and batches.
    static WORKSPACE: RefCell<Workspace> = RefCell::new(Workspace::new());
}

/// Runs `f` with this thread's workspace (a fresh one if it is already borrowed).
fn with_workspace<R>(f: impl FnOnce(&mut Workspace) -> R) -> R {
    WORKSPACE.with(|cell| match cell.try_borrow_mut() {
        Ok(mut ws) => f(&mut ws),
        Err(_) => f(&mut Workspace::new()),
    })
}

/// Produces one view per [`ViewTransform`] from each image, as Lightly's `MultiViewTransform`.
///
/// All views share one output shape, so a batch fits one contiguous buffer laid out
/// `[view][n][3][H][W]`: view `v` of the batch is the slice
/// `out[v * n * 3 * H * W..(v + 1) * n * 3 * H * W]`, ready to become a `[n, 3, H, W]` tensor.
///
/// Randomness: view `v` of the sample with dataset index `index` uses
/// [`view_rng`]`(seed, epoch, index, v)`, whatever the thread, so the output depends only on
/// `(seed, epoch, indices)` and is byte-identical on any number of rayon threads.
#[derive(Debug)]
pub struct MultiViewTransform {
    views: Vec<ViewTransform>,
}

impl MultiViewTransform {
    /// # Errors
    /// [`AugmentError::InvalidViews`] when `views` is empty or the views' output shapes differ.
    pub fn new(views: Vec<ViewTransform>) -> Result<Self> {
        let first = views.first().ok_or(AugmentError::InvalidViews("no views"))?.output_shape();
        if views.iter().any(|v| v.output_shape() != first) {
            return Err(AugmentError::InvalidViews("views differ in output shape"));
        }
        Ok(Self { views })
    }

    /// The view transforms.
    pub fn views(&self) -> &[ViewTransform] {
        &self.views
    }

    /// Number of views.
    pub fn num_views(&self) -> usize {
        self.views.len()
    }

    /// `[3, H, W]` of every view.
    pub fn view_shape(&self) -> [usize; 3] {
        self.views.first().map_or([3, 0, 0], ViewTransform::output_shape)
    }

    /// Length of a batch buffer for `n` images: `views * n * 3 * H * W`.
    pub fn batch_len(&self, n: usize) -> usize {
        self.num_views() * n * self.view_shape().iter().product::<usize>()
    }

    /// All views of one image, view `v` drawn from [`view_rng`]`(seed, epoch, index, v)`
    /// (the same values as in a batch).
    ///
    /// # Errors
    /// As [`ViewTransform::apply_into`].
    pub fn apply(&self, src: RgbView<'_>, seed: u64, epoch: u64, index: u64) -> Result<Vec<Vec<f32>>> {
        with_workspace(|ws| {
            (0..self.views.len())
                .map(|v| {
                    let mut out = vec![0.0; self.views[v].output_len()];
                    let mut rng = view_rng(seed, epoch, index, v as u64);
                    self.views[v].apply_into(src, ws, &mut rng, &mut out)?;
                    Ok(out)
                })
                .collect()
        })
    }

    /// All views of one image, drawing from one generator in sequence (Lightly's behaviour,
    /// for callers that manage their own generator).
    ///
    /// # Errors
    /// As [`ViewTransform::apply_into`].
    pub fn apply_with_rng(&self, src: RgbView<'_>, rng: &mut ChaCha8Rng) -> Result<Vec<Vec<f32>>> {
        with_workspace(|ws| {
            self.views
                .iter()
                .map(|view| {
                    let mut out = vec![0.0; view.output_len()];
                    view.apply_into(src, ws, rng, &mut out)?;
                    Ok(out)
                })
                .collect()
        })
    }

    /// Augments a batch in parallel on the current rayon pool into `out`, laid out
    /// `[view][n][3][H][W]` (see the type docs). `indices[i]` is the dataset index of
    /// `images[i]`, which seeds its views together with `seed` and `epoch`.
    ///
    /// Each worker thread reuses one scratch [`Workspace`]; nothing is allocated per image once
    /// the workspaces have grown. Run inside `pool.install(..)` to choose the thread count.
    ///
    /// # Errors
    /// [`AugmentError::LengthMismatch`] when `images` and `indices` differ in length,
    /// [`AugmentError::BufferSize`] when `out` is not [`MultiViewTransform::batch_len`] long.
    pub fn apply_batch_into(
        &self,
        images: &[RgbView<'_>],
        indices: &[u64],
        seed: u64,
        epoch: u64,
        out: &mut [f32],
    ) -> Result<()> {
        let n = images.len();
        if indices.len() != n {
            return Err(AugmentError::LengthMismatch {
                what: "images vs indices",
                left: n,
                right: indices.len(),
            });
        }
        let expected = self.batch_len(n);
        if out.len() != expected {
            return Err(AugmentError::BufferSize { expected, actual: out.len() });
        }
        let chunk = self.view_shape().iter().product::<usize>();
        if n == 0 || chunk == 0 {
            return Ok(());
        }
        out.par_chunks_mut(chunk).enumerate().try_for_each(|(k, dst)| {
            let (v, i) = (k / n, k % n);
            let mut rng = view_rng(seed, epoch, indices[i], v as u64);
            with_workspace(|ws| self.views[v].apply_into(images[i], ws, &mut rng, dst))
        })
    }

    /// As [`MultiViewTransform::apply_batch_into`], allocating the output.
    ///
    /// # Errors
    /// As [`MultiViewTransform::apply_batch_into`].
    pub fn apply_batch(
        &self,
        images: &[RgbView<'_>],
        indices: &[u64],
        seed: u64,
        epoch: u64,
    ) -> Result<Vec<f32>> {
        let mut out = vec![0.0; self.batch_len(images.len())];
        self.apply_batch_into(images, indices, seed, epoch, &mut out)?;
        Ok(out)
    }
}
