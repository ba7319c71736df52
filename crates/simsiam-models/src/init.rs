//! Seeded weight initialisation.
//!
//! Candle's CPU random generator cannot be seeded, so a model built on a plain `VarMap` gets
//! different weights every run. [`seeded_var_builder`] returns a `VarBuilder` that creates each
//! variable in a `VarMap` from our own ChaCha8 stream, derived from the run's seed and the
//! variable's name: the weights depend on neither construction order nor thread count.

use std::collections::hash_map::Entry;

use candle::{DType, Device, Result, Shape, Tensor, Var};
use candle_nn::init::{FanInOut, NormalOrUniform};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder, VarMap};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A `VarBuilder` whose new variables land in `varmap`, initialised from `seed`.
///
/// Variables already present in `varmap` (loaded weights, say) are returned as they are.
pub fn seeded_var_builder(varmap: &VarMap, seed: u64, dtype: DType, device: &Device) -> VarBuilder<'static> {
    let backend = SeededVarMap { varmap: varmap.clone(), seed };
    VarBuilder::from_backend(Box::new(backend), dtype, device.clone())
}

struct SeededVarMap {
    varmap: VarMap,
    seed: u64,
}

impl SimpleBackend for SeededVarMap {
    fn get(&self, shape: Shape, name: &str, init: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let mut data = self
            .varmap
            .data()
            .lock()
            .map_err(|_| candle::Error::Msg("the VarMap's lock is poisoned".into()))?;
        match data.entry(name.to_owned()) {
            Entry::Occupied(var) => {
                let tensor = var.get().as_tensor();
                if tensor.shape() != &shape {
                    candle::bail!(
                        "variable `{name}` has shape {:?}, the model expects {shape:?}",
                        tensor.shape()
                    );
                }
                Ok(tensor.clone())
            }
            Entry::Vacant(slot) => {
                let mut rng = ChaCha8Rng::seed_from_u64(variable_seed(self.seed, name));
                let values = sample(&shape, init, &mut rng);
                let tensor = Tensor::from_vec(values, shape, dev)?.to_dtype(dtype)?;
                let var = Var::from_tensor(&tensor)?;
                Ok(slot.insert(var).as_tensor().clone())
            }
        }
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _dev: &Device) -> Result<Tensor> {
        candle::bail!("variable `{name}` must be created with a shape and an initialisation")
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.varmap.data().lock().map(|d| d.contains_key(name)).unwrap_or(false)
    }
}

/// Mixes the run's seed with an FNV-1a hash of the variable's name.
fn variable_seed(seed: u64, name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    splitmix64(seed ^ h)
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Draws `shape.elem_count()` values as PyTorch's `torch.nn.init` would define them.
fn sample(shape: &Shape, init: Init, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let n = shape.elem_count();
    match init {
        Init::Const(v) => vec![v as f32; n],
        Init::Uniform { lo, up } => (0..n).map(|_| uniform(rng, lo, up)).collect(),
        Init::Randn { mean, stdev } => (0..n).map(|_| (mean + stdev * normal(rng)) as f32).collect(),
        Init::Kaiming { dist, fan, non_linearity } => {
            let fan = match fan {
                FanInOut::FanIn => fan_in(shape),
                FanInOut::FanOut => fan_out(shape),
            };
            let std = non_linearity.gain() / (fan.max(1) as f64).sqrt();
            match dist {
                NormalOrUniform::Normal => (0..n).map(|_| (std * normal(rng)) as f32).collect(),
                NormalOrUniform::Uniform => {
                    let bound = 3f64.sqrt() * std;
                    (0..n).map(|_| uniform(rng, -bound, bound)).collect()
                }
            }
        }
    }
}

/// `torch.nn.init`'s fan-in: input channels times the receptive field.
pub(crate) fn fan_in(shape: &Shape) -> usize {
    let dims = shape.dims();
    dims.get(1).copied().unwrap_or(1) * dims.iter().skip(2).product::<usize>()
}

/// `torch.nn.init`'s fan-out: output channels times the receptive field.
pub(crate) fn fan_out(shape: &Shape) -> usize {
    let dims = shape.dims();
    dims.first().copied().unwrap_or(1) * dims.iter().skip(2).product::<usize>()
}

fn uniform(rng: &mut ChaCha8Rng, lo: f64, up: f64) -> f32 {
    (lo + (up - lo) * rng.random::<f64>()) as f32
}

/// A standard normal draw (Box-Muller).
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1 = 1.0 - rng.random::<f64>(); // (0, 1], so the log is finite
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use candle_nn::init::NonLinearity;

    use super::*;

    fn build(seed: u64, names: &[&str]) -> Result<Vec<Vec<f32>>> {
        let varmap = VarMap::new();
        let vb = seeded_var_builder(&varmap, seed, DType::F32, &Device::Cpu);
        names
            .iter()
            .map(|n| {
                vb.get_with_hints((4, 3), n, Init::Randn { mean: 0.0, stdev: 1.0 })?.flatten_all()?.to_vec1()
            })
            .collect()
    }

    #[test]
    fn same_seed_same_weights_whatever_the_order() -> Result<()> {
        let a = build(7, &["a", "b"])?;
        let b = build(7, &["b", "a"])?;
        assert_eq!(a[0], b[1]);
        assert_eq!(a[1], b[0]);
        assert_ne!(a[0], a[1]);
        assert_ne!(build(8, &["a"])?[0], a[0]);
        Ok(())
    }

    #[test]
    fn kaiming_normal_fan_out_has_the_right_std() -> Result<()> {
        let varmap = VarMap::new();
        let vb = seeded_var_builder(&varmap, 0, DType::F32, &Device::Cpu);
        let init = Init::Kaiming {
            dist: NormalOrUniform::Normal,
            fan: FanInOut::FanOut,
            non_linearity: NonLinearity::ReLU,
        };
        let w = vb.get_with_hints((64, 32, 3, 3), "w", init)?;
        let v: Vec<f32> = w.flatten_all()?.to_vec1()?;
        let mean = v.iter().sum::<f32>() / v.len() as f32;
        let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / v.len() as f32).sqrt();
        let want = (2.0f32 / (64.0 * 9.0)).sqrt();
        assert!(mean.abs() < 0.01 * want * 10.0);
        assert!((std / want - 1.0).abs() < 0.03, "{std} vs {want}");
        Ok(())
    }

    #[test]
    fn existing_variables_are_kept_and_shapes_checked() -> Result<()> {
        let varmap = VarMap::new();
        let vb = seeded_var_builder(&varmap, 0, DType::F32, &Device::Cpu);
        let a = vb.get_with_hints(3, "x", Init::Const(2.0))?;
        let b = vb.get_with_hints(3, "x", Init::Const(5.0))?;
        assert_eq!(b.to_vec1::<f32>()?, a.to_vec1::<f32>()?);
        assert!(vb.get_with_hints(4, "x", Init::Const(0.0)).is_err());
        Ok(())
    }
}
