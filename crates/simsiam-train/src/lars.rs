//! LARS as the official SimSiam linear evaluation uses it: NVIDIA apex's `LARC` in scaling
//! mode (`clip=False`) around `torch.optim.SGD` with momentum.

use std::collections::HashMap;

use candle::backprop::GradStore;
use candle::{Tensor, Var};

use crate::{Result, TrainError};

/// LARS's hyper-parameters (`main_lincls.py --lars`: momentum 0.9, weight decay 0, trust
/// coefficient 0.001, apex's eps 1e-8).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LarsConfig {
    /// SGD momentum (dampening 0, no Nesterov).
    pub momentum: f64,
    /// L2 penalty, folded into the adapted gradient as LARC folds it.
    pub weight_decay: f64,
    /// The trust coefficient `eta` of You et al. (2017).
    pub trust_coefficient: f64,
    /// Added to the denominator of the trust ratio.
    pub eps: f64,
}

impl Default for LarsConfig {
    fn default() -> Self {
        Self { momentum: 0.9, weight_decay: 0.0, trust_coefficient: 0.001, eps: 1e-8 }
    }
}

/// Layer-wise adaptive rate scaling over SGD with momentum, step for step apex's
/// `LARC(SGD(params, lr, momentum, weight_decay), trust_coefficient, clip=False)`:
///
/// - for each variable with a gradient `g` and weights `w`, when `|w|` and `|g|` are both
///   non-zero, `g <- (g + weight_decay * w) * trust * |w| / (|g| + weight_decay * |w| + eps)`;
///   otherwise `g` is left as it is (no weight decay either: LARC takes it from SGD). Every
///   variable is adapted, biases included: apex's LARC has no exclusion of 1-d parameters.
/// - then SGD: the buffer `b = g` on its first step and `b = momentum * b + g` after,
///   `w <- w - lr * b`.
///
/// Variables without a gradient in a step are skipped, as PyTorch skips `grad is None`.
#[derive(Debug)]
pub struct Lars {
    params: Vec<(String, Var)>,
    lr: f64,
    config: LarsConfig,
    momentum: HashMap<String, Tensor>,
}

impl Lars {
    /// LARS over named variables (unique names) at learning rate `lr`.
    pub fn new(params: Vec<(String, Var)>, lr: f64, config: LarsConfig) -> Result<Self> {
        let LarsConfig { momentum, weight_decay, trust_coefficient, eps } = config;
        let valid = (0.0..1.0).contains(&momentum)
            && weight_decay >= 0.0
            && trust_coefficient > 0.0
            && trust_coefficient.is_finite()
            && eps >= 0.0
            && eps.is_finite();
        if !valid {
            return Err(TrainError::Config(format!(
                "LARS needs 0 <= momentum < 1, weight_decay >= 0, trust_coefficient > 0 and eps >= 0, got {config:?}"
            )));
        }
        let mut seen = std::collections::HashSet::new();
        if let Some((name, _)) = params.iter().find(|(name, _)| !seen.insert(name.as_str())) {
            return Err(TrainError::Config(format!("parameter `{name}` is given twice")));
        }
        let mut lars = Self { params, lr: 0.0, config, momentum: HashMap::new() };
        lars.set_lr(lr)?;
        Ok(lars)
    }

    /// The learning rate of the next step.
    pub fn lr(&self) -> f64 {
        self.lr
    }

    /// Sets the learning rate of the next steps (a schedule's value).
    pub fn set_lr(&mut self, lr: f64) -> Result<()> {
        if !(lr >= 0.0 && lr.is_finite()) {
            return Err(TrainError::Config(format!("LARS needs a finite lr >= 0, got {lr}")));
        }
        self.lr = lr;
        Ok(())
    }

    /// The trust ratio that scales a gradient, or `None` when LARC leaves it alone (a zero
    /// weight or gradient norm).
    pub fn trust_ratio(&self, weight_norm: f64, grad_norm: f64) -> Option<f64> {
        let LarsConfig { weight_decay, trust_coefficient, eps, .. } = self.config;
        (weight_norm != 0.0 && grad_norm != 0.0)
            .then(|| trust_coefficient * weight_norm / (grad_norm + weight_norm * weight_decay + eps))
    }

    /// One update from `grads`.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        let LarsConfig { momentum, weight_decay, .. } = self.config;
        for (name, var) in &self.params {
            let Some(grad) = grads.get(var.as_tensor()) else { continue };
            // Detached, as in `Sgd::step`: the buffers must not record the update's ops.
            let (w, grad) = (var.as_tensor().detach(), grad.detach());
            let norm = |t: &Tensor| -> Result<f64> {
                Ok(t.to_dtype(candle::DType::F32)?.sqr()?.sum_all()?.sqrt()?.to_scalar::<f32>()? as f64)
            };
            let d = match self.trust_ratio(norm(&w)?, norm(&grad)?) {
                Some(ratio) if weight_decay != 0.0 => ((&grad + (&w * weight_decay)?)? * ratio)?,
                Some(ratio) => (grad * ratio)?,
                None => grad,
            };
            let buf = match self.momentum.get(name) {
                Some(buf) if momentum != 0.0 => ((buf * momentum)? + &d)?,
                _ => d,
            };
            var.set(&(&w - (&buf * self.lr)?)?)?;
            self.momentum.insert(name.clone(), buf);
        }
        Ok(())
    }

    /// The momentum buffers, by parameter name.
    pub fn momentum_buffers(&self) -> &HashMap<String, Tensor> {
        &self.momentum
    }
}

#[cfg(test)]
mod tests {
    use candle::{Device, Var};

    use super::*;

    /// Gradients of `sum(w * g)` are exactly `g`.
    fn grads_of(pairs: &[(&Var, &[f32])]) -> Result<GradStore> {
        let mut loss = Tensor::zeros((), candle::DType::F32, &Device::Cpu)?;
        for (var, g) in pairs {
            let g = Tensor::new(*g, &Device::Cpu)?;
            loss = (loss + (var.as_tensor() * g)?.sum_all()?)?;
        }
        Ok(loss.backward()?)
    }

    fn values(var: &Var) -> Result<Vec<f32>> {
        Ok(var.as_tensor().to_vec1::<f32>()?)
    }

    fn close(got: &[f32], want: &[f64]) {
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            // f32 weights near 4 carry rounding of up to 2.4e-7.
            assert!((*g as f64 - w).abs() < 1e-6, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn two_steps_match_hand_computed_values() -> Result<()> {
        // w = (3, 4): |w| = 5; g = (0.6, 0.8): |g| = 1; trust 0.001, lr 0.5, momentum 0.9.
        let w = Var::new(&[3f32, 4.0], &Device::Cpu)?;
        // A zero-initialised bias: its first step is plain SGD, unadapted.
        let b = Var::new(&[0f32, 0.0], &Device::Cpu)?;
        let params = vec![("w".into(), w.clone()), ("b".into(), b.clone())];
        let mut lars = Lars::new(params, 0.5, LarsConfig::default())?;
        lars.step(&grads_of(&[(&w, &[0.6, 0.8]), (&b, &[1.0, -2.0])])?)?;
        // ratio = 0.001 * 5 / (1 + 1e-8); update = lr * ratio * g.
        let r1 = 0.005 / (1.0 + 1e-8);
        close(&values(&w)?, &[3.0 - 0.5 * r1 * 0.6, 4.0 - 0.5 * r1 * 0.8]);
        close(&values(&b)?, &[-0.5, 1.0]);

        // Second step at lr 0.25: |w'| and |b| = sqrt(1.25) set the ratios; momentum 0.9.
        lars.set_lr(0.25)?;
        lars.step(&grads_of(&[(&w, &[0.6, 0.8]), (&b, &[2.0, 0.0])])?)?;
        let w1 = [3.0 - 0.5 * r1 * 0.6, 4.0 - 0.5 * r1 * 0.8];
        let w1_norm = (w1[0] * w1[0] + w1[1] * w1[1]).sqrt();
        let r2 = 0.001 * w1_norm / (1.0 + 1e-8);
        let buf = [0.9 * r1 * 0.6 + r2 * 0.6, 0.9 * r1 * 0.8 + r2 * 0.8];
        close(&values(&w)?, &[w1[0] - 0.25 * buf[0], w1[1] - 0.25 * buf[1]]);
        let rb = 0.001 * 1.25f64.sqrt() / (2.0 + 1e-8);
        let bbuf = [0.9 * 1.0 + rb * 2.0, 0.9 * -2.0];
        close(&values(&b)?, &[-0.5 - 0.25 * bbuf[0], 1.0 - 0.25 * bbuf[1]]);
        Ok(())
    }

    #[test]
    fn weight_decay_enters_the_ratio_and_the_gradient() -> Result<()> {
        let w = Var::new(&[3f32, 4.0], &Device::Cpu)?;
        let config = LarsConfig { momentum: 0.0, weight_decay: 0.1, ..LarsConfig::default() };
        let mut lars = Lars::new(vec![("w".into(), w.clone())], 1.0, config)?;
        lars.step(&grads_of(&[(&w, &[0.6, 0.8])])?)?;
        // ratio = 0.001 * 5 / (1 + 0.1 * 5 + 1e-8); d = (g + 0.1 w) * ratio.
        let r = 0.005 / (1.5 + 1e-8);
        close(&values(&w)?, &[3.0 - r * (0.6 + 0.3), 4.0 - r * (0.8 + 0.4)]);
        assert!(lars.momentum_buffers()["w"].dims() == [2]);
        Ok(())
    }

    #[test]
    fn a_variable_without_a_gradient_is_skipped() -> Result<()> {
        let (w, v) = (Var::new(&[1f32, 2.0], &Device::Cpu)?, Var::new(&[5f32], &Device::Cpu)?);
        let mut lars =
            Lars::new(vec![("w".into(), w.clone()), ("v".into(), v.clone())], 0.1, LarsConfig::default())?;
        lars.step(&grads_of(&[(&w, &[1.0, 1.0])])?)?;
        assert_eq!(values(&v)?, [5.0]);
        assert!(!lars.momentum_buffers().contains_key("v"));
        assert_ne!(values(&w)?, [1.0, 2.0]);
        Ok(())
    }

    #[test]
    fn invalid_settings_are_errors() -> Result<()> {
        let w = || Ok::<_, TrainError>(vec![("w".to_owned(), Var::new(&[1f32], &Device::Cpu)?)]);
        assert!(Lars::new(w()?, -0.1, LarsConfig::default()).is_err());
        assert!(Lars::new(w()?, 0.1, LarsConfig { momentum: 1.0, ..LarsConfig::default() }).is_err());
        assert!(
            Lars::new(w()?, 0.1, LarsConfig { trust_coefficient: 0.0, ..LarsConfig::default() }).is_err()
        );
        let mut twice = w()?;
        twice.extend(w()?);
        assert!(Lars::new(twice, 0.1, LarsConfig::default()).is_err());
        Ok(())
    }
}
