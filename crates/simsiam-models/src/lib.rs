//! Models for SimSiam (Chen & He, "Exploring Simple Siamese Representation Learning",
//! CVPR 2021), on candle.
//!
//! - [`ResNetConfig`]: ResNet-18, -34 and -50 with torchvision's parameter names (a torchvision
//!   state dict saved as safetensors loads as it is) and two stems: torchvision's ImageNet stem
//!   and the CIFAR stem.
//! - [`ProjectionHeadConfig`] and [`PredictionHeadConfig`]: the projection and prediction MLPs
//!   with Lightly's defaults and names.
//! - [`SimSiam`]: backbone plus heads; for two views it returns `z0`, `z1` (detached, the
//!   stop-gradient) and `p0`, `p1`.
//! - [`BatchNorm`] ([`batch_norm`], [`BatchNormConfig`]): PyTorch's batch norm, with training
//!   statistics from the local batch or summed over data-parallel replicas
//!   ([`BatchStats::Synced`], PyTorch's `SyncBatchNorm`); [`Conv2d`] ([`conv2d`]) and
//!   [`linear`] with PyTorch's initialisations. The layers run on [`simsiam_kernels`]'
//!   custom ops; this crate holds no kernels and no `unsafe`.
//! - [`Backbone`]: bring your own encoder.
//! - [`seeded_var_builder`]: reproducible initialisation, since candle's CPU generator cannot
//!   be seeded.
//!
//! ```
//! use candle::{DType, Device, Tensor};
//! use candle_nn::VarMap;
//! use simsiam_models::{
//!     PredictionHeadConfig, ProjectionHeadConfig, ResNetConfig, SimSiam, Stem, seeded_var_builder,
//! };
//!
//! # fn main() -> candle::Result<()> {
//! let dev = Device::Cpu;
//! let varmap = VarMap::new();
//! let vb = seeded_var_builder(&varmap, 42, DType::F32, &dev);
//! // Lightly's example on CIFAR: torchvision's resnet18, heads 512-512-128 and 128-64-128.
//! // A narrow one here keeps the doctest quick.
//! let resnet = ResNetConfig::resnet18(Stem::ImageNet).with_width(8);
//! let backbone = resnet.init(vb.pp("backbone"))?;
//! let model = SimSiam::new(
//!     backbone,
//!     &ProjectionHeadConfig::new(resnet.feature_dim(), 64, 32),
//!     &PredictionHeadConfig::new(32, 16, 32),
//!     vb,
//! )?;
//! let x0 = Tensor::randn(0f32, 1.0, (4, 3, 32, 32), &dev)?;
//! let x1 = Tensor::randn(0f32, 1.0, (4, 3, 32, 32), &dev)?;
//! let out = model.forward_views(&x0, &x1, true)?;
//! assert_eq!(out.p0.dims(), [4, 32]);
//! # Ok(())
//! # }
//! ```

mod backbone;
mod batch_norm;
mod heads;
mod init;
mod layers;
mod precision;
mod resnet;
mod simsiam;

pub use backbone::{Backbone, BackboneTape};
pub use batch_norm::{
    AllReduceSum, BatchNorm, BatchNormConfig, BatchStats, SyncedStats, batch_norm, synced_batch_norm_train,
};
pub use heads::{PredictionHead, PredictionHeadConfig, ProjectionHead, ProjectionHeadConfig};
pub use init::seeded_var_builder;
pub use layers::{Conv2d, Conv2dConfig, conv2d, linear};
pub use precision::Precision;
pub use resnet::{Block, ResNet, ResNetConfig, Stem};
pub use simsiam::{SimSiam, TrainingPass, TwoViewOutput, ViewOutput};
/// The kernels crate the layers run on, re-exported for programs that set its options.
pub use simsiam_kernels as kernels;
pub use simsiam_kernels::{MaxPool2dConfig, max_pool2d};

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
