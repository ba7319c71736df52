//! The linear classifier of the paper protocol: torchvision's `fc` on frozen features.

use candle::{DType, Device, Tensor, Var};
use candle_nn::{Init, VarMap};
use simsiam_models::seeded_var_builder;

use crate::{Result, TrainError};

/// `fc = Linear(feature_dim, classes)`, initialised as `main_lincls.py` initialises it:
/// weight from N(0, 0.01), bias 0.
#[derive(Debug, Clone)]
pub struct LinearClassifier {
    weight: Var,
    bias: Var,
}

impl LinearClassifier {
    /// A classifier with weights drawn from the project's seeded stream for `(seed,
    /// "fc.weight")`, N(0, 0.01), and a zero bias.
    pub fn new(feature_dim: usize, classes: usize, seed: u64, device: &Device) -> Result<Self> {
        if feature_dim == 0 || classes == 0 {
            return Err(TrainError::Config(format!(
                "a linear classifier needs features and classes, got {feature_dim} -> {classes}"
            )));
        }
        let varmap = VarMap::new();
        let vb = seeded_var_builder(&varmap, seed, DType::F32, device).pp("fc");
        let weight =
            vb.get_with_hints((classes, feature_dim), "weight", Init::Randn { mean: 0.0, stdev: 0.01 })?;
        let bias = vb.get_with_hints(classes, "bias", Init::Const(0.0))?;
        Self::from_tensors(&weight, &bias)
    }

    /// A classifier starting from given weights (`[classes, feature_dim]`) and bias
    /// (`[classes]`), copied.
    pub fn from_tensors(weight: &Tensor, bias: &Tensor) -> Result<Self> {
        let (classes, _) = weight.dims2()?;
        if bias.dims() != [classes] {
            return Err(TrainError::Config(format!(
                "classifier bias of shape {:?} for a weight of shape {:?}",
                bias.dims(),
                weight.dims()
            )));
        }
        let copy = |t: &Tensor| -> Result<Var> { Ok(Var::from_tensor(&t.to_dtype(DType::F32)?.copy()?)?) };
        Ok(Self { weight: copy(weight)?, bias: copy(bias)? })
    }

    /// `[classes, feature_dim]`.
    pub fn weight(&self) -> &Tensor {
        self.weight.as_tensor()
    }

    /// `[classes]`.
    pub fn bias(&self) -> &Tensor {
        self.bias.as_tensor()
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.bias.as_tensor().elem_count()
    }

    /// The variables and their torchvision names, for the optimiser.
    pub fn params(&self) -> Vec<(String, Var)> {
        vec![("fc.weight".into(), self.weight.clone()), ("fc.bias".into(), self.bias.clone())]
    }

    /// Class scores.
    ///
    /// # Shapes
    /// - `features`: `[n, feature_dim]`, f32
    /// - returns `[n, classes]`
    pub fn forward(&self, features: &Tensor) -> Result<Tensor> {
        Ok(features.matmul(&self.weight.as_tensor().t()?)?.broadcast_add(self.bias.as_tensor())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initialisation_is_seeded_normal_with_a_zero_bias() -> Result<()> {
        let fc = LinearClassifier::new(64, 100, 3, &Device::Cpu)?;
        let w: Vec<f32> = fc.weight().flatten_all()?.to_vec1()?;
        let n = w.len() as f32;
        let mean = w.iter().sum::<f32>() / n;
        let std = (w.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n).sqrt();
        assert!(mean.abs() < 1e-3 && (std - 0.01).abs() < 5e-4, "mean {mean}, std {std}");
        assert_eq!(fc.bias().to_vec1::<f32>()?, vec![0.0; 100]);
        assert_eq!(fc.classes(), 100);
        let again = LinearClassifier::new(64, 100, 3, &Device::Cpu)?;
        assert_eq!(again.weight().flatten_all()?.to_vec1::<f32>()?, w);
        let other = LinearClassifier::new(64, 100, 4, &Device::Cpu)?;
        assert_ne!(other.weight().flatten_all()?.to_vec1::<f32>()?, w);
        Ok(())
    }

    #[test]
    fn forward_is_x_w_transposed_plus_b() -> Result<()> {
        let dev = Device::Cpu;
        let w = Tensor::new(&[[1f32, 2.0], [0.0, -1.0], [3.0, 0.5]], &dev)?;
        let fc = LinearClassifier::from_tensors(&w, &Tensor::new(&[0.5f32, 0.0, -1.0], &dev)?)?;
        let y = fc.forward(&Tensor::new(&[[1f32, 1.0], [2.0, 0.0]], &dev)?)?;
        assert_eq!(y.to_vec2::<f32>()?, [[3.5, -1.0, 2.5], [2.5, 0.0, 5.0]]);
        assert!(LinearClassifier::from_tensors(&w, &Tensor::zeros(2, DType::F32, &dev)?).is_err());
        Ok(())
    }
}
