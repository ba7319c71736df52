//! Every value of every preset against the source it names, written out here with the file and
//! line it comes from (lightly-ai/lightly at e8d317fc, facebookresearch/simsiam at a7bc1772;
//! for our `cifar10-cpu`, the section of docs/training.md),
//! and the augmentation section against `simsiam_augment::SimSiamConfig`'s constructor of the
//! same name, so the library and the program share one definition.
//!
//! "ours" marks the settings no recipe has (loader threads, device, logging, checkpoints, the
//! kNN monitor where the source has none): results do not depend on them.

use std::path::PathBuf;

use simsiam::augment::{EvalTransform, Normalization, SimSiamConfig};
use simsiam::config::{
    AugmentConfig, Backbone, DataConfig, DatasetKind, DeviceKind, EvalResizeKind, LossKind, ModelConfig,
    NormalizationKind, OnlineProbeSetting, PrecisionKind, Preset, RunConfig, ScheduleStep, StemKind,
    TrainConfig,
};

/// The preset, checked to be `want` and to share its augmentation with `library`.
fn check(preset: Preset, want: &RunConfig, library: SimSiamConfig) {
    let got = RunConfig::from_preset(preset);
    assert_eq!(&got, want, "{preset}");
    assert_eq!(got.augment.simsiam().expect("valid"), library, "{preset}: the library's constructor");
    library.build().expect("the preset's augmentation builds");
    // The knobs the config file leaves out, the same in all five sources and ours: blur sigma in
    // [0.1, 2] with the kernel from sigma (simsiam_transform.py lines 88-89, simclr_transform.py
    // lines 49-50, facebookresearch/simsiam simsiam/loader.py line 26) and two views
    // (simsiam_transform.py line 115; simsiam/loader.py's TwoCropsTransform).
    assert_eq!((library.sigmas, library.kernel_size, library.num_views), ((0.1, 2.0), None, 2), "{preset}");
}

#[test]
fn lightly_example_is_lightlys_examples_pytorch_simsiam_py() {
    // lightly-ai/lightly examples/pytorch/simsiam.py
    let want = RunConfig {
        data: DataConfig {
            dataset: DatasetKind::Cifar10, // line 40: torchvision.datasets.CIFAR10
            path: "data/cifar10".into(),   // ours (line 41 downloads to "datasets/cifar10")
            limit: 0,                      // line 40: the whole training set
            workers: 2,                    // ours (line 51: num_workers=8)
        },
        // line 39: SimSiamTransform(input_size=32); the defaults are
        // lightly/transforms/simsiam_transform.py lines 76-95.
        augment: AugmentConfig {
            input_size: 32,                          // simsiam.py line 39
            cj_prob: 0.8,                            // simsiam_transform.py line 79
            cj_strength: 1.0,                        // line 80
            cj_bright: 0.4,                          // line 81
            cj_contrast: 0.4,                        // line 82
            cj_sat: 0.4,                             // line 83
            cj_hue: 0.1,                             // line 84
            min_scale: 0.2,                          // line 85
            random_gray_scale: 0.2,                  // line 86
            gaussian_blur: 0.5, // line 87 (sigmas (0.1, 2), line 89: SimSiamConfig's default)
            hf_prob: 0.5,       // line 91
            vf_prob: 0.0,       // line 90
            rr_prob: 0.0,       // line 92
            rr_degrees: vec![], // line 93: None, 90-degree rotations
            normalize: NormalizationKind::Imagenet, // line 94: IMAGENET_NORMALIZE
            eval_resize: EvalResizeKind::CenterCrop, // ours (CIFAR is evaluated as it is)
        },
        model: ModelConfig {
            backbone: Backbone::Resnet18,   // line 32: torchvision.models.resnet18()
            stem: StemKind::Imagenet,       // line 32: torchvision's 7x7 stem with max-pool
            width: 64,                      // line 32
            zero_init_residual: false,      // line 32: torchvision's default
            proj_hidden_dim: 512,           // line 21: SimSiamProjectionHead(512, 512, 128)
            proj_output_dim: 128,           // line 21
            proj_layers: 3,                 // lightly/models/modules/heads.py lines 342-347
            proj_last_bn_affine: false,     // heads.py line 347: BatchNorm1d(output_dim, affine=False)
            pred_hidden_dim: 64,            // line 22: SimSiamPredictionHead(128, 64, 128)
            loss: LossKind::NegativeCosine, // line 54: NegativeCosineSimilarity()
            init: PathBuf::new(),           // ours: the seeded initialisation
        },
        train: TrainConfig {
            epochs: 10,                // line 58: range(10)
            batch_size: 256,           // line 48: batch_size=256
            base_lr: 0.06,             // line 55: SGD(model.parameters(), lr=0.06)
            scale_lr: false,           // line 55: no scaling
            momentum: 0.0,             // line 55: no momentum
            weight_decay: 0.0,         // line 55: no weight decay
            fixed_predictor_lr: false, // line 55: one parameter group
            warmup_epochs: 0,
            schedule: ScheduleStep::Constant, // no scheduler anywhere in the file
            seed: 0,                          // ours (the example sets no seed)
            device: DeviceKind::Cpu,          // ours
            precision: PrecisionKind::Auto,   // ours
            output_dir: "runs/lightly-example".into(), // ours
            log_every: 20,                    // ours
            checkpoint_every: 1,              // ours
            keep_checkpoints: 3,              // ours
            knn_every: 1,                     // ours: the example has no kNN monitor
            knn_k: 200,
            knn_t: 0.1,
            online_probe: OnlineProbeSetting::Auto, // ours: on where there are labels
            minutes: 0.0,                           // ours: no time budget
            knn_at_minutes: Vec::new(),             // ours
        },
    };
    check(Preset::LightlyExample, &want, SimSiamConfig::lightly_example());
}

#[test]
fn lightly_cifar10_benchmark_is_lightlys_cifar10_benchmark_py() {
    // lightly-ai/lightly docs/source/getting_started/benchmarks/cifar10_benchmark.py
    let want = RunConfig {
        data: DataConfig {
            dataset: DatasetKind::Cifar10, // lines 143-165: CIFAR-10's training images
            path: "data/cifar10".into(),   // ours (line 164: "/datasets/cifar10/train/")
            limit: 0,
            workers: 2, // ours (line 104: num_workers = 8)
        },
        // lines 181-184: SimSiamTransform(input_size=32, gaussian_blur=0.0); the rest are
        // simsiam_transform.py's defaults (lines 76-95).
        augment: AugmentConfig {
            input_size: 32, // line 182
            cj_prob: 0.8,   // defaults, simsiam_transform.py lines 79-84
            cj_strength: 1.0,
            cj_bright: 0.4,
            cj_contrast: 0.4,
            cj_sat: 0.4,
            cj_hue: 0.1,
            min_scale: 0.2,                          // simsiam_transform.py line 85
            random_gray_scale: 0.2,                  // line 86
            gaussian_blur: 0.0,                      // benchmark line 183
            hf_prob: 0.5,                            // simsiam_transform.py line 91
            vf_prob: 0.0,                            // line 90
            rr_prob: 0.0,                            // line 92
            rr_degrees: vec![],                      // line 93
            normalize: NormalizationKind::Imagenet,  // line 94; the test transform too (lines 217-225)
            eval_resize: EvalResizeKind::CenterCrop, // ours (CIFAR is evaluated as it is, lines 217-225)
        },
        model: ModelConfig {
            backbone: Backbone::Resnet18, // line 396: ResNetGenerator("resnet-18")
            stem: StemKind::Cifar,        // lightly/models/resnet.py lines 192-195: 3x3 conv, no max-pool
            width: 64,
            zero_init_residual: false,
            proj_hidden_dim: 2048,     // line 404: (512, 2048, BatchNorm1d(2048), ReLU)
            proj_output_dim: 2048,     // line 405: (2048, 2048, BatchNorm1d(2048), None)
            proj_layers: 2,            // lines 402-407: two blocks
            proj_last_bn_affine: true, // line 405: BatchNorm1d(2048) is affine
            pred_hidden_dim: 512,      // line 400: SimSiamPredictionHead(2048, 512, 2048)
            loss: LossKind::NegativeCosine, // line 408
            init: PathBuf::new(),      // ours: the seeded initialisation
        },
        train: TrainConfig {
            epochs: 200,               // line 103: max_epochs = 200
            batch_size: 128,           // line 125: batch_size = 128
            base_lr: 0.06,             // line 428: lr=6e-2, "no lr-scaling"
            scale_lr: false,           // line 428
            momentum: 0.9,             // line 429
            weight_decay: 5e-4,        // line 430
            fixed_predictor_lr: false, // line 426: one parameter group
            warmup_epochs: 0,
            schedule: ScheduleStep::Epoch, // line 432: CosineAnnealingLR(optim, max_epochs), per epoch
            seed: 0,                       // lines 946-947: pl.seed_everything(0) for the one run
            device: DeviceKind::Cpu,       // ours
            precision: PrecisionKind::Auto, // ours
            output_dir: "runs/lightly-cifar10-benchmark".into(), // ours
            log_every: 20,                 // ours
            checkpoint_every: 1,           // ours
            keep_checkpoints: 3,           // ours
            knn_every: 1,
            knn_k: 200, // lines 105-106: knn_k = 200, knn_t = 0.1; kNN at every validation epoch.
            knn_t: 0.1,
            online_probe: OnlineProbeSetting::Auto, // ours: on where there are labels
            minutes: 0.0,                           // ours: no time budget
            knn_at_minutes: Vec::new(),             // ours
        },
    };
    check(Preset::LightlyCifar10Benchmark, &want, SimSiamConfig::lightly_cifar10_benchmark());
}

#[test]
fn satellite_is_lightlys_tutorial_4() {
    // lightly-ai/lightly docs/source/tutorials_source/package/tutorial_simsiam_esa.py
    let want = RunConfig {
        data: DataConfig {
            dataset: DatasetKind::Folder, // line 109: LightlyDataset(input_dir=path_to_data)
            path: "images".into(),        // ours (line 78: "/datasets/sentinel-2-italy-v1/")
            limit: 0,
            workers: 2, // ours (line 56: num_workers = 8)
        },
        // lines 91-106: SimCLRTransform(...); the rest are SimCLRTransform's defaults,
        // lightly/transforms/simclr_transform.py lines 39-55.
        augment: AugmentConfig {
            input_size: 256,                        // line 92 (input_size = 256, line 60)
            cj_prob: 0.2,                           // line 101
            cj_strength: 1.0,                       // simclr_transform.py line 41
            cj_bright: 0.1,                         // line 102
            cj_contrast: 0.1,                       // line 103
            cj_sat: 0.1,                            // line 105
            cj_hue: 0.1,                            // line 104
            min_scale: 0.5,                         // line 99
            random_gray_scale: 0.2,                 // simclr_transform.py line 47
            gaussian_blur: 0.5,                     // simclr_transform.py line 48
            hf_prob: 0.5,                           // line 94
            vf_prob: 0.5,                           // line 95
            rr_prob: 0.5,                           // line 96
            rr_degrees: vec![],                     // simclr_transform.py line 54: None, 90-degree rotations
            normalize: NormalizationKind::Imagenet, // simclr_transform.py line 55
            eval_resize: EvalResizeKind::Resize,    // lines 123-131: Resize((input_size, input_size))
        },
        model: ModelConfig {
            backbone: Backbone::Resnet18, // line 174: torchvision.models.resnet18()
            stem: StemKind::Imagenet,     // line 174
            width: 64,
            zero_init_residual: false,
            proj_hidden_dim: 512, // line 65: out_dim = proj_hidden_dim = 512
            proj_output_dim: 512, // line 65
            proj_layers: 3,       // line 157: SimSiamProjectionHead (heads.py lines 342-347)
            proj_last_bn_affine: false,
            pred_hidden_dim: 128,           // line 67: pred_hidden_dim = 128
            loss: LossKind::NegativeCosine, // line 183
            init: PathBuf::new(),           // ours: the seeded initialisation
        },
        train: TrainConfig {
            epochs: 50,                // line 59: epochs = 50
            batch_size: 128,           // line 57: batch_size = 128
            base_lr: 0.05,             // line 186: lr = 0.05 * batch_size / 256
            scale_lr: true,            // line 186
            momentum: 0.9,             // line 188: momentum=0.9
            weight_decay: 5e-4,        // line 188: weight_decay=5e-4
            fixed_predictor_lr: false, // line 188: one parameter group
            warmup_epochs: 0,
            schedule: ScheduleStep::Constant,    // no scheduler in the file
            seed: 0,                             // line 74: torch.manual_seed(0)
            device: DeviceKind::Cpu,             // ours
            precision: PrecisionKind::Auto,      // ours
            output_dir: "runs/satellite".into(), // ours
            log_every: 20,                       // ours
            checkpoint_every: 1,                 // ours
            keep_checkpoints: 3,                 // ours
            knn_every: 1,                        // ours: the tutorial has no kNN monitor
            knn_k: 200,
            knn_t: 0.1,
            online_probe: OnlineProbeSetting::Auto, // ours: on where there are labels
            minutes: 0.0,                           // ours: no time budget
            knn_at_minutes: Vec::new(),             // ours
        },
    };
    check(Preset::Satellite, &want, SimSiamConfig::satellite());
    let run = RunConfig::from_preset(Preset::Satellite);
    assert!((run.lr() - 0.025).abs() < 1e-15);
    // lines 125-129: Resize((256, 256)), ToTensor, Normalize(IMAGENET_NORMALIZE).
    assert_eq!(
        run.eval_transform(),
        EvalTransform {
            resize: Some(256),
            square: true,
            center_crop: None,
            normalization: Normalization::IMAGENET
        }
    );
}

#[test]
fn cifar10_paper_is_the_papers_cifar_recipe_on_the_official_model() {
    // arXiv:2011.10566, appendix "CIFAR experiments"; facebookresearch/simsiam main_simsiam.py,
    // simsiam/builder.py and README.md.
    let want = RunConfig {
        data: DataConfig { dataset: DatasetKind::Cifar10, path: "data/cifar10".into(), limit: 0, workers: 2 },
        augment: AugmentConfig {
            input_size: 32,   // paper: 32x32 inputs
            cj_prob: 0.8,     // main_simsiam.py lines 231-233
            cj_strength: 1.0, // line 232: ColorJitter(0.4, 0.4, 0.4, 0.1)
            cj_bright: 0.4,
            cj_contrast: 0.4,
            cj_sat: 0.4,
            cj_hue: 0.1,
            min_scale: 0.2,         // line 230: RandomResizedCrop(224, scale=(0.2, 1.))
            random_gray_scale: 0.2, // line 234
            gaussian_blur: 0.0,     // paper: no blur for CIFAR (line 235 blurs ImageNet)
            hf_prob: 0.5,           // line 236: RandomHorizontalFlip()
            vf_prob: 0.0,
            rr_prob: 0.0,
            rr_degrees: vec![],
            normalize: NormalizationKind::Cifar10, // ours: the sources give no CIFAR statistics
            eval_resize: EvalResizeKind::CenterCrop, // ours (CIFAR is evaluated as it is)
        },
        model: ModelConfig {
            backbone: Backbone::Resnet18, // paper: ResNet-18 variant
            stem: StemKind::Cifar,        // paper: the CIFAR variant (3x3 conv, no max-pool)
            width: 64,
            zero_init_residual: true,   // builder.py line 24: zero_init_residual=True
            proj_hidden_dim: 2048,      // paper, "Baseline settings": the hidden fc is 2048-d
            proj_output_dim: 2048,      // main_simsiam.py line 86: dim 2048
            proj_layers: 2,             // paper: the projection MLP has 2 layers on CIFAR
            proj_last_bn_affine: false, // builder.py line 35: BatchNorm1d(dim, affine=False)
            pred_hidden_dim: 512,       // main_simsiam.py line 88: pred-dim 512
            loss: LossKind::NegativeCosine,
            init: PathBuf::new(), // ours: the seeded initialisation
        },
        train: TrainConfig {
            epochs: 800,              // paper: 800 epochs
            batch_size: 512,          // paper: batch 512
            base_lr: 0.03,            // paper: base lr 0.03
            scale_lr: true,           // main_simsiam.py line 157: init_lr = lr * batch_size / 256
            momentum: 0.9,            // paper; main_simsiam.py line 58
            weight_decay: 5e-4,       // paper: weight decay 0.0005
            fixed_predictor_lr: true, // README.md line 32: --fix-pred-lr
            warmup_epochs: 0,
            schedule: ScheduleStep::Epoch, // main_simsiam.py lines 257, 359-366: cosine per epoch
            seed: 0,                       // ours (line 75: no seed by default)
            device: DeviceKind::Cpu,       // ours
            precision: PrecisionKind::Auto, // ours
            output_dir: "runs/cifar10-paper".into(), // ours
            log_every: 20,                 // ours
            checkpoint_every: 1,           // ours
            keep_checkpoints: 3,           // ours
            knn_every: 10,                 // kNN every 10 epochs: ours
            knn_k: 200,
            knn_t: 0.1,
            online_probe: OnlineProbeSetting::Auto, // ours: on where there are labels
            minutes: 0.0,                           // ours: no time budget
            knn_at_minutes: Vec::new(),             // ours
        },
    };
    check(Preset::Cifar10Paper, &want, SimSiamConfig::cifar10_paper());
    assert!((RunConfig::from_preset(Preset::Cifar10Paper).lr() - 0.06).abs() < 1e-15);
    assert_eq!(SimSiamConfig::cifar10(), SimSiamConfig::cifar10_paper());
}

#[test]
fn imagenet_paper_is_the_official_main_simsiam_py() {
    // facebookresearch/simsiam main_simsiam.py, simsiam/builder.py, simsiam/loader.py, README.md
    let want = RunConfig {
        data: DataConfig {
            dataset: DatasetKind::Folder,       // line 241: datasets.ImageFolder
            path: "data/imagenet/train".into(), // line 224: os.path.join(args.data, 'train')
            limit: 0,
            workers: 2, // ours (line 45: 32 workers)
        },
        augment: AugmentConfig {
            input_size: 224,  // line 230: RandomResizedCrop(224, scale=(0.2, 1.))
            cj_prob: 0.8,     // lines 231-233
            cj_strength: 1.0, // line 232: ColorJitter(0.4, 0.4, 0.4, 0.1)
            cj_bright: 0.4,
            cj_contrast: 0.4,
            cj_sat: 0.4,
            cj_hue: 0.1,
            min_scale: 0.2,         // line 230
            random_gray_scale: 0.2, // line 234
            gaussian_blur: 0.5,     // line 235 (sigma [.1, 2.], loader.py line 26)
            hf_prob: 0.5,           // line 236
            vf_prob: 0.0,
            rr_prob: 0.0,
            rr_degrees: vec![],
            normalize: NormalizationKind::Imagenet,  // lines 225-226
            eval_resize: EvalResizeKind::CenterCrop, // main_lincls.py lines 284-285: Resize(256), CenterCrop(224)
        },
        model: ModelConfig {
            backbone: Backbone::Resnet50, // line 40: default='resnet50'
            stem: StemKind::Imagenet,     // torchvision's resnet50
            width: 64,
            zero_init_residual: true,   // builder.py line 24
            proj_hidden_dim: 2048,      // builder.py line 27: prev_dim = fc's 2048 inputs
            proj_output_dim: 2048,      // line 86: dim 2048
            proj_layers: 3,             // builder.py lines 28-35: a 3-layer projector
            proj_last_bn_affine: false, // builder.py line 35
            pred_hidden_dim: 512,       // line 88: pred-dim 512
            loss: LossKind::NegativeCosine,
            init: PathBuf::new(), // ours: the seeded initialisation
        },
        train: TrainConfig {
            epochs: 100,              // line 47: epochs 100
            batch_size: 512,          // line 51: batch 512
            base_lr: 0.05,            // line 56: lr 0.05
            scale_lr: true,           // line 157: init_lr = lr * batch_size / 256
            momentum: 0.9,            // line 58
            weight_decay: 1e-4,       // line 60: weight decay 1e-4
            fixed_predictor_lr: true, // README.md line 32: --fix-pred-lr
            warmup_epochs: 0,
            schedule: ScheduleStep::Epoch,            // lines 257, 359-366
            seed: 0,                                  // ours (line 75: no seed by default)
            device: DeviceKind::Cpu,                  // ours
            precision: PrecisionKind::Auto,           // ours
            output_dir: "runs/imagenet-paper".into(), // ours
            log_every: 20,                            // ours
            checkpoint_every: 1,                      // ours
            keep_checkpoints: 3,                      // ours
            knn_every: 10,                            // ours: the official code has no kNN monitor
            knn_k: 200,
            knn_t: 0.1,
            online_probe: OnlineProbeSetting::Auto, // ours: on where there are labels
            minutes: 0.0,                           // ours: no time budget
            knn_at_minutes: Vec::new(),             // ours
        },
    };
    check(Preset::ImagenetPaper, &want, SimSiamConfig::imagenet_paper());
    assert!((RunConfig::from_preset(Preset::ImagenetPaper).lr() - 0.1).abs() < 1e-15);
}

#[test]
fn cifar10_cpu_is_the_recipe_sweeps_choice() {
    // Ours, not a published recipe: docs/training.md, "Recipe sweep for a CPU" (the choice) and
    // "A run that fits in about 30 CPU minutes" (its width-16 recipe, spelled out as --sets).
    let want = RunConfig {
        data: DataConfig {
            dataset: DatasetKind::Cifar10, // training.md: all 50,000 CIFAR-10 training images
            path: "data/cifar10".into(),   // training.md: --set data.path=data/cifar10
            limit: 0,                      // training.md: all 50,000 training images
            workers: 2,                    // ours
        },
        // SimSiamConfig::cifar10_cpu(): the lightly-example preset's SimSiamTransform(input_size=32)
        // (simsiam_transform.py lines 76-95) with training.md's two changes.
        augment: AugmentConfig {
            input_size: 32,                          // as lightly-example (simsiam.py line 39)
            cj_prob: 0.8,                            // simsiam_transform.py line 79
            cj_strength: 1.0,                        // line 80
            cj_bright: 0.4,                          // line 81
            cj_contrast: 0.4,                        // line 82
            cj_sat: 0.4,                             // line 83
            cj_hue: 0.1,                             // line 84
            min_scale: 0.2,                          // line 85
            random_gray_scale: 0.2,                  // line 86
            gaussian_blur: 0.0,                      // training.md: --set augment.gaussian_blur=0
            hf_prob: 0.5,                            // simsiam_transform.py line 91
            vf_prob: 0.0,                            // line 90
            rr_prob: 0.0,                            // line 92
            rr_degrees: vec![],                      // line 93
            normalize: NormalizationKind::Cifar10,   // training.md: --set augment.normalize=cifar10
            eval_resize: EvalResizeKind::CenterCrop, // ours (CIFAR is evaluated as it is)
        },
        model: ModelConfig {
            backbone: Backbone::Resnet18,   // training.md: torchvision's ResNet-18 layout
            stem: StemKind::Imagenet,       // training.md: --set model.stem=imagenet
            width: 16,                      // training.md: --set model.width=16 (128 features)
            zero_init_residual: false,      // as lightly-example (torchvision's default)
            proj_hidden_dim: 512,           // training.md: lightly-example's heads 128-512-128
            proj_output_dim: 128,           // and 128-64-128 (Lightly's simsiam.py lines 21-22)
            proj_layers: 3,                 // heads.py lines 342-347
            proj_last_bn_affine: false,     // heads.py line 347
            pred_hidden_dim: 64,            // simsiam.py line 22
            loss: LossKind::NegativeCosine, // as lightly-example (simsiam.py line 54)
            init: PathBuf::new(),           // ours: the seeded initialisation
        },
        train: TrainConfig {
            epochs: 200,                            // training.md, recipe sweep
            batch_size: 128,                        // training.md: --set train.batch_size=128
            base_lr: 0.06,                          // training.md: --set train.base_lr=0.06
            scale_lr: false,    // training.md: lr 0.06 unscaled (lightly-example's, not --set)
            momentum: 0.9,      // training.md: --set train.momentum=0.9
            weight_decay: 5e-4, // training.md: --set train.weight_decay=5e-4
            fixed_predictor_lr: true, // training.md: --set train.fixed_predictor_lr=true
            warmup_epochs: 0,   // training.md: none (lightly-example's, not --set)
            schedule: ScheduleStep::Iteration, // training.md: --set train.schedule=iteration
            seed: 0,            // training.md: --set train.seed=0
            device: DeviceKind::Cpu, // ours (and the point of the recipe)
            precision: PrecisionKind::Auto, // ours
            output_dir: "runs/cifar10-cpu".into(), // ours
            log_every: 20,      // ours
            checkpoint_every: 1, // ours
            keep_checkpoints: 3, // ours
            knn_every: 5,       // training.md, recipe sweep
            knn_k: 200,         // training.md: kNN k = 200
            knn_t: 0.1,         // training.md: t = 0.1
            online_probe: OnlineProbeSetting::Auto, // ours: on where there are labels
            minutes: 0.0,       // ours: no time budget
            knn_at_minutes: Vec::new(), // ours
        },
    };
    check(Preset::Cifar10Cpu, &want, SimSiamConfig::cifar10_cpu());
    assert!((RunConfig::from_preset(Preset::Cifar10Cpu).lr() - 0.06).abs() < 1e-15);
}

#[test]
fn every_preset_has_its_test() {
    // A new preset needs a test above comparing its values with its source.
    assert_eq!(
        Preset::ALL.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
        [
            "lightly-example",
            "lightly-cifar10-benchmark",
            "satellite",
            "cifar10-paper",
            "imagenet-paper",
            "cifar10-cpu"
        ]
    );
}
