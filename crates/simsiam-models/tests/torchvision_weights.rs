//! A torchvision `resnet18()` state dict, saved as safetensors by
//! `tools/golden/make_models_golden.py`, loads as it is and gives torchvision's features.

mod common;

use candle::{DType, Device, ModuleT, Result};
use candle_nn::VarBuilder;
use common::{assert_close, fixture, load};
use simsiam_models::{Backbone, ResNetConfig, Stem};

#[test]
fn torchvision_resnet18_state_dict_gives_the_same_features() -> Result<()> {
    let path = fixture("torchvision_resnet18_f16.safetensors");
    // SAFETY: the fixture is a regular file that nothing modifies while the test runs.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[path], DType::F32, &Device::Cpu)? };
    let resnet = ResNetConfig::resnet18(Stem::ImageNet).init(vb)?;
    assert_eq!(resnet.feature_dim(), 512);
    let io = load("torchvision_resnet18_io.safetensors")?;
    let features = resnet.forward_t(&io["x"], false)?;
    assert_close("features", &features, &io["features"], 1e-4)
}
