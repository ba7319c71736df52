//! Shapes, parameter names and configuration checks of the ResNets, heads and SimSiam.

use candle::{DType, Device, ModuleT, Result, Tensor};
use candle_nn::VarMap;
use simsiam_models::{
    Backbone, PredictionHeadConfig, ProjectionHeadConfig, ResNetConfig, SimSiam, Stem, seeded_var_builder,
};

fn names(varmap: &VarMap) -> Vec<String> {
    let mut names: Vec<String> = varmap.data().lock().expect("lock").keys().cloned().collect();
    names.sort();
    names
}

fn count(varmap: &VarMap, exclude_buffers: bool) -> usize {
    let data = varmap.data().lock().expect("lock");
    data.iter()
        .filter(|(n, _)| !exclude_buffers || !n.contains("running_"))
        .map(|(_, v)| v.as_tensor().elem_count())
        .sum()
}

#[test]
fn full_width_resnets_have_torchvision_parameter_counts() -> Result<()> {
    // torchvision: resnet18 11,689,512 / resnet34 21,797,672 / resnet50 25,557,032 parameters,
    // of which fc holds 513,000 / 513,000 / 2,049,000.
    for (config, expected, features) in [
        (ResNetConfig::resnet18(Stem::ImageNet), 11_689_512 - 513_000, 512),
        (ResNetConfig::resnet34(Stem::ImageNet), 21_797_672 - 513_000, 512),
        (ResNetConfig::resnet50(Stem::ImageNet), 25_557_032 - 2_049_000, 2048),
    ] {
        let varmap = VarMap::new();
        let resnet = config.init(seeded_var_builder(&varmap, 0, DType::F32, &Device::Cpu))?;
        assert_eq!(count(&varmap, true), expected, "{config:?}");
        assert_eq!(resnet.feature_dim(), features);
        assert_eq!(config.feature_dim(), features);
    }
    Ok(())
}

#[test]
fn cifar_stem_swaps_the_first_convolution_only() -> Result<()> {
    let varmap = VarMap::new();
    ResNetConfig::resnet18(Stem::Cifar).init(seeded_var_builder(&varmap, 0, DType::F32, &Device::Cpu))?;
    let conv1 = varmap.data().lock().expect("lock")["conv1.weight"].as_tensor().dims().to_vec();
    assert_eq!(conv1, [64, 3, 3, 3]);
    // 11,173,962 CIFAR ResNet-18 parameters without fc: 64*3*(49 - 9) fewer than torchvision's.
    assert_eq!(count(&varmap, true), 11_689_512 - 513_000 - 64 * 3 * 40);
    Ok(())
}

#[test]
fn feature_maps_have_the_documented_sizes() -> Result<()> {
    let dev = Device::Cpu;
    for (stem, size, expected) in
        [(Stem::ImageNet, 32, 1), (Stem::ImageNet, 64, 2), (Stem::Cifar, 32, 4), (Stem::Cifar, 13, 2)]
    {
        let varmap = VarMap::new();
        let resnet = ResNetConfig::resnet18(stem).with_width(4).init(seeded_var_builder(
            &varmap,
            0,
            DType::F32,
            &dev,
        ))?;
        let x = Tensor::randn(0f32, 1.0, (2, 3, size, size), &dev)?;
        let map = resnet.feature_map(&x, false)?;
        assert_eq!(map.dims(), [2, 32, expected, expected], "{stem:?} {size}");
        assert_eq!(resnet.forward_t(&x, false)?.dims(), [2, 32]);
    }
    Ok(())
}

#[test]
fn zero_init_residual_zeroes_the_last_bn_of_each_block() -> Result<()> {
    for (config, last) in
        [(ResNetConfig::resnet18(Stem::Cifar), "bn2"), (ResNetConfig::resnet50(Stem::Cifar), "bn3")]
    {
        let varmap = VarMap::new();
        config.with_width(4).with_zero_init_residual(true).init(seeded_var_builder(
            &varmap,
            0,
            DType::F32,
            &Device::Cpu,
        ))?;
        let data = varmap.data().lock().expect("lock");
        let mut zeroed = 0;
        for (name, var) in data.iter().filter(|(n, _)| n.ends_with(".weight") && n.contains(".bn")) {
            let sum = var.as_tensor().abs()?.sum_all()?.to_scalar::<f32>()?;
            if name.contains(&format!(".{last}.")) {
                assert_eq!(sum, 0.0, "{name}");
                zeroed += 1;
            } else {
                assert!(sum > 0.0, "{name}");
            }
        }
        assert!(zeroed >= 8);
    }
    Ok(())
}

#[test]
fn heads_use_lightly_names_and_shapes() -> Result<()> {
    let varmap = VarMap::new();
    let vb = seeded_var_builder(&varmap, 0, DType::F32, &Device::Cpu);
    let projection = ProjectionHeadConfig::new(512, 512, 128).init(vb.pp("projection_head"))?;
    let prediction = PredictionHeadConfig::new(128, 64, 128).init(vb.pp("prediction_head"))?;
    assert_eq!(
        names(&varmap),
        [
            "prediction_head.layers.0.weight",
            "prediction_head.layers.1.bias",
            "prediction_head.layers.1.running_mean",
            "prediction_head.layers.1.running_var",
            "prediction_head.layers.1.weight",
            "prediction_head.layers.3.bias",
            "prediction_head.layers.3.weight",
            "projection_head.layers.0.weight",
            "projection_head.layers.1.bias",
            "projection_head.layers.1.running_mean",
            "projection_head.layers.1.running_var",
            "projection_head.layers.1.weight",
            "projection_head.layers.3.weight",
            "projection_head.layers.4.bias",
            "projection_head.layers.4.running_mean",
            "projection_head.layers.4.running_var",
            "projection_head.layers.4.weight",
            "projection_head.layers.6.weight",
            "projection_head.layers.7.running_mean",
            "projection_head.layers.7.running_var",
        ]
    );
    let x = Tensor::randn(0f32, 1.0, (5, 512), &Device::Cpu)?;
    let z = projection.forward_t(&x, true)?;
    assert_eq!(z.dims(), [5, 128]);
    assert_eq!(prediction.forward_t(&z, true)?.dims(), [5, 128]);
    Ok(())
}

#[test]
fn lightly_defaults_are_2048_wide() {
    let p = ProjectionHeadConfig::lightly();
    assert_eq!(
        (p.input_dim, p.hidden_dim, p.output_dim, p.num_layers, p.last_bn_affine),
        (2048, 2048, 2048, 3, false)
    );
    let q = PredictionHeadConfig::lightly();
    assert_eq!((q.input_dim, q.hidden_dim, q.output_dim), (2048, 512, 2048));
}

#[test]
fn invalid_configurations_are_errors() -> Result<()> {
    let varmap = VarMap::new();
    let vb = seeded_var_builder(&varmap, 0, DType::F32, &Device::Cpu);
    assert!(ResNetConfig::resnet18(Stem::Cifar).with_width(0).init(vb.pp("a")).is_err());
    let no_layers = ProjectionHeadConfig { num_layers: 0, ..ProjectionHeadConfig::new(8, 8, 8) };
    assert!(no_layers.init(vb.pp("b")).is_err());
    assert!(PredictionHeadConfig::new(8, 0, 8).init(vb.pp("c")).is_err());

    let backbone = ResNetConfig::resnet18(Stem::Cifar).with_width(4).init(vb.pp("backbone"))?;
    // The backbone gives 32 features, not 64.
    let wrong_input = ProjectionHeadConfig::new(64, 16, 8);
    assert!(
        SimSiam::new(backbone.clone(), &wrong_input, &PredictionHeadConfig::new(8, 4, 8), vb.clone())
            .is_err()
    );
    let wrong_prediction = PredictionHeadConfig::new(8, 4, 16);
    assert!(SimSiam::new(backbone, &ProjectionHeadConfig::new(32, 16, 8), &wrong_prediction, vb).is_err());
    Ok(())
}

#[test]
fn the_same_seed_builds_the_same_model() -> Result<()> {
    let build = |seed| -> Result<Vec<f32>> {
        let varmap = VarMap::new();
        let resnet = ResNetConfig::resnet18(Stem::Cifar).with_width(4).init(seeded_var_builder(
            &varmap,
            seed,
            DType::F32,
            &Device::Cpu,
        ))?;
        let x = Tensor::ones((1, 3, 8, 8), DType::F32, &Device::Cpu)?;
        resnet.forward_t(&x, false)?.flatten_all()?.to_vec1()
    };
    assert_eq!(build(5)?, build(5)?);
    assert_ne!(build(5)?, build(6)?);
    Ok(())
}
