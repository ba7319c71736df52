//! Whole presets on a batch, one and two rayon threads.

use criterion::{Criterion, Throughput, criterion_group};
use simsiam_augment::{RgbView, SimSiamConfig};

fn presets(c: &mut Criterion) {
    for (name, config, side, n) in [
        ("cifar10_32", SimSiamConfig::cifar10(), 32u32, 256usize),
        ("default_256_to_224", SimSiamConfig::default(), 256, 16),
    ] {
        let transform = config.build().expect("preset is valid");
        let pixels: Vec<Vec<u8>> = (0..n).map(|i| super::noise(side, side, i as u32)).collect();
        let images: Vec<RgbView<'_>> =
            pixels.iter().map(|p| RgbView::new(side, side, p).expect("valid")).collect();
        let indices: Vec<u64> = (0..n as u64).collect();
        let mut out = vec![0.0f32; transform.batch_len(n)];
        let mut group = c.benchmark_group(format!("cpu/simsiam_{name}"));
        group.throughput(Throughput::Elements(n as u64));
        group.sample_size(20);
        for threads in [1usize, 2] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
            let mut epoch = 0;
            group.bench_function(format!("threads_{threads}"), |b| {
                b.iter(|| {
                    epoch += 1;
                    pool.install(|| transform.apply_batch_into(&images, &indices, 0, epoch, &mut out))
                        .expect("valid")
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, presets);
