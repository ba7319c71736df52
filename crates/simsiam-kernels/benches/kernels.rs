//! Criterion benchmarks of the CPU kernels on layer shapes of the ResNet-18 benchmarks, with
//! throughput in floating-point operations (criterion's "elements" are FLOPs here, so its
//! `Melem/s` reads as MFLOP/s), next to candle's stock ops.
//!
//! ```sh
//! cargo bench -p simsiam-kernels --bench kernels
//! ```

use candle::{DType, Device, Tensor, Var};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use simsiam_kernels::{Conv2dParams, batch_norm_train, conv2d, conv2d_input_grad, conv2d_weight_grad};
use simsiam_kernels::{MaxPool2dConfig, max_pool2d};

/// (name, batch, in, out, size, kernel, stride, padding)
type ConvCase = (&'static str, usize, usize, usize, usize, usize, usize, usize);

const CONVS: &[ConvCase] = &[
    ("cifar-layer1", 64, 64, 64, 32, 3, 1, 1),
    ("cifar-layer2-down", 64, 64, 128, 32, 3, 2, 1),
    ("cifar-layer3", 64, 256, 256, 8, 3, 1, 1),
    ("cifar-layer4", 64, 512, 512, 4, 3, 1, 1),
    ("cifar-layer4-1x1", 64, 256, 512, 8, 1, 2, 0),
    ("imagenet-stem", 64, 3, 64, 32, 7, 2, 3),
    ("imagenet-layer4", 64, 512, 512, 1, 3, 1, 1),
];

fn convs(c: &mut Criterion) {
    let dev = Device::Cpu;
    let mut group = c.benchmark_group("conv2d-cpu");
    group.sample_size(10);
    for &(name, n, ci, co, size, k, s, p) in CONVS {
        let params = Conv2dParams { stride: s, padding: p };
        let x = Tensor::randn(0f32, 1.0, (n, ci, size, size), &dev).expect("x");
        let w = Tensor::randn(0f32, 1.0, (co, ci, k, k), &dev).expect("w");
        let y = conv2d(&x, &w, params).expect("conv");
        let (_, _, oh, ow) = y.dims4().expect("dims");
        let flops = 2 * (n * co * oh * ow * ci * k * k) as u64;
        group.throughput(Throughput::Elements(flops));
        group.bench_function(BenchmarkId::new("forward", name), |b| {
            b.iter(|| conv2d(&x, &w, params).expect("fwd"))
        });
        group.bench_function(BenchmarkId::new("forward-stock", name), |b| {
            b.iter(|| x.conv2d(&w, p, s, 1, 1).expect("stock"))
        });
        group.bench_function(BenchmarkId::new("input-grad", name), |b| {
            b.iter(|| conv2d_input_grad(&y, &w, params, (size, size)).expect("dx"))
        });
        group.bench_function(BenchmarkId::new("weight-grad", name), |b| {
            b.iter(|| conv2d_weight_grad(&x, &y, params, (k, k)).expect("dw"))
        });
    }
    group.finish();
}

fn batch_norms(c: &mut Criterion) {
    let dev = Device::Cpu;
    let mut group = c.benchmark_group("batch-norm-cpu");
    group.sample_size(10);
    for (name, shape) in
        [("cifar-layer1", &[64, 64, 32, 32][..]), ("cifar-layer4", &[64, 512, 4, 4]), ("head", &[64, 2048])]
    {
        let ch = shape[1];
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, shape, &dev).expect("x")).expect("var");
        let dy = Tensor::randn(0f32, 1.0, shape, &dev).expect("dy");
        let w = Var::from_tensor(&Tensor::ones(ch, DType::F32, &dev).expect("w")).expect("var");
        let bias = Var::from_tensor(&Tensor::zeros(ch, DType::F32, &dev).expect("b")).expect("var");
        // About ten operations per element for the forward pass with ReLU.
        group.throughput(Throughput::Elements(10 * x.elem_count() as u64));
        group.bench_function(BenchmarkId::new("forward-relu", name), |b| {
            b.iter(|| {
                batch_norm_train(x.as_tensor(), Some((w.as_tensor(), bias.as_tensor())), 1e-5, true)
                    .expect("bn")
            })
        });
        // Includes candle's `* dy` and its backward, to feed a contiguous gradient.
        group.bench_function(BenchmarkId::new("forward-backward-relu", name), |b| {
            b.iter(|| {
                let (y, _) =
                    batch_norm_train(x.as_tensor(), Some((w.as_tensor(), bias.as_tensor())), 1e-5, true)
                        .expect("bn");
                (y * &dy).expect("mul").sum_all().expect("sum").backward().expect("backward")
            })
        });
    }
    group.finish();
}

fn max_pools(c: &mut Criterion) {
    let dev = Device::Cpu;
    let mut group = c.benchmark_group("max-pool-cpu");
    group.sample_size(10);
    let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (64, 64, 16, 16), &dev).expect("x")).expect("var");
    let dy = Tensor::randn(0f32, 1.0, (64, 64, 8, 8), &dev).expect("dy");
    let config = MaxPool2dConfig { kernel: 3, stride: 2, padding: 1 };
    // Nine comparisons per output.
    group.throughput(Throughput::Elements(9 * dy.elem_count() as u64));
    group.bench_function("forward/imagenet-stem", |b| {
        b.iter(|| max_pool2d(x.as_tensor(), config).expect("pool"))
    });
    group.bench_function("forward-backward/imagenet-stem", |b| {
        b.iter(|| {
            let y = max_pool2d(x.as_tensor(), config).expect("pool");
            (y * &dy).expect("mul").sum_all().expect("sum").backward().expect("backward")
        })
    });
    group.finish();
}

criterion_group!(benches, convs, batch_norms, max_pools);
criterion_main!(benches);
