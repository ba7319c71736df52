//! Criterion benchmarks of `simsiam-augment`: `cargo bench -p simsiam-augment`.
#![allow(missing_docs)]

mod benchmarks;

criterion::criterion_main!(benchmarks::ops::benches, benchmarks::presets::benches);
