//! Stochastic gradient descent with momentum and weight decay, with `torch.optim.SGD`'s
//! semantics, and parameter groups with their own learning rate.

use std::collections::HashMap;

use candle::backprop::GradStore;
use candle::{Tensor, Var};
use simsiam_models::kernels::{SgdStep, sgd_step};

use crate::{Result, TrainError};

/// SGD's hyper-parameters, shared by every group.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdConfig {
    /// Momentum factor (0.9 in the paper); 0 disables the momentum buffer.
    pub momentum: f64,
    /// L2 penalty added to the gradient, as PyTorch's `weight_decay` (1e-4 on ImageNet,
    /// 5e-4 on CIFAR in the paper).
    pub weight_decay: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
}

impl Default for SgdConfig {
    fn default() -> Self {
        Self { momentum: 0.9, weight_decay: 1e-4, nesterov: false }
    }
}

/// A set of named variables that share a learning rate.
#[derive(Debug, Clone)]
pub struct ParamGroup {
    /// The variables and their names (which key the momentum buffers in checkpoints).
    pub params: Vec<(String, Var)>,
    /// The learning rate of the next step.
    pub lr: f64,
    /// Keep the base learning rate whatever the schedule says (the paper's predictor).
    pub fixed_lr: bool,
}

/// `torch.optim.SGD` (dampening 0): with `d = grad + weight_decay * w`, the buffer
/// `b = d` on its first step and `b = momentum * b + d` after, the update is
/// `w -= lr * b`, or `w -= lr * (d + momentum * b)` with Nesterov momentum. Variables without
/// a gradient in a step are skipped, as PyTorch skips parameters whose `grad` is `None`.
#[derive(Debug)]
pub struct Sgd {
    groups: Vec<ParamGroup>,
    /// A group's own weight decay, where it has one (PyTorch's per-group `weight_decay`).
    group_decay: Vec<Option<f64>>,
    config: SgdConfig,
    momentum: HashMap<String, Tensor>,
}

impl Sgd {
    /// An optimiser over `groups`; names must be unique across groups.
    pub fn new(groups: Vec<ParamGroup>, config: SgdConfig) -> Result<Self> {
        if !(0.0..1.0).contains(&config.momentum) || config.weight_decay < 0.0 {
            return Err(TrainError::Config(format!(
                "SGD needs 0 <= momentum < 1 and weight_decay >= 0, got {config:?}"
            )));
        }
        if config.nesterov && config.momentum == 0.0 {
            return Err(TrainError::Config("Nesterov momentum requires a momentum above 0".into()));
        }
        let mut seen = std::collections::HashSet::new();
        for (name, _) in groups.iter().flat_map(|g| &g.params) {
            if !seen.insert(name.as_str()) {
                return Err(TrainError::Config(format!("parameter `{name}` is in two groups")));
            }
        }
        let group_decay = vec![None; groups.len()];
        Ok(Self { groups, group_decay, config, momentum: HashMap::new() })
    }

    /// Adds `group` with its own `weight_decay` instead of the shared one (as a PyTorch
    /// parameter group's `"weight_decay": 0.0`); its names must be new.
    pub fn push_group(&mut self, group: ParamGroup, weight_decay: f64) -> Result<()> {
        if !(weight_decay >= 0.0 && weight_decay.is_finite()) {
            return Err(TrainError::Config(format!(
                "a group's weight_decay must be >= 0, got {weight_decay}"
            )));
        }
        for (name, _) in &group.params {
            if self.groups.iter().flat_map(|g| &g.params).any(|(n, _)| n == name) {
                return Err(TrainError::Config(format!("parameter `{name}` is in two groups")));
            }
        }
        self.groups.push(group);
        self.group_decay.push(Some(weight_decay));
        Ok(())
    }

    /// The parameter groups, in order.
    pub fn groups(&self) -> &[ParamGroup] {
        &self.groups
    }

    /// Sets every group's learning rate to `lr`, except fixed-lr groups, which get `base_lr`.
    pub fn set_lr(&mut self, lr: f64, base_lr: f64) {
        for group in &mut self.groups {
            group.lr = if group.fixed_lr { base_lr } else { lr };
        }
    }

    /// One update from `grads`, each parameter in place ([`sgd_step`]: two passes on the CPU).
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        let SgdConfig { momentum, nesterov, .. } = self.config;
        for (group, decay) in self.groups.iter().zip(&self.group_decay) {
            let weight_decay = decay.unwrap_or(self.config.weight_decay);
            let step = SgdStep { lr: group.lr, momentum, weight_decay, nesterov };
            for (name, var) in &group.params {
                let Some(grad) = grads.get(var.as_tensor()) else { continue };
                if let Some(buf) = sgd_step(var, grad, self.momentum.get(name), step)? {
                    self.momentum.insert(name.clone(), buf);
                }
            }
        }
        Ok(())
    }

    /// The momentum buffers, by parameter name, for checkpoints.
    pub fn momentum_buffers(&self) -> &HashMap<String, Tensor> {
        &self.momentum
    }

    /// Restores momentum buffers saved by [`Sgd::momentum_buffers`]; names must be known
    /// parameters with matching shapes.
    pub fn load_momentum_buffers(&mut self, buffers: HashMap<String, Tensor>) -> Result<()> {
        for (name, buf) in &buffers {
            let var = self
                .groups
                .iter()
                .flat_map(|g| &g.params)
                .find(|(n, _)| n == name)
                .map(|(_, v)| v)
                .ok_or_else(|| TrainError::Config(format!("momentum for unknown parameter `{name}`")))?;
            if var.as_tensor().shape() != buf.shape() {
                return Err(TrainError::Config(format!(
                    "momentum for `{name}` has shape {:?}, the parameter {:?}",
                    buf.shape(),
                    var.as_tensor().shape()
                )));
            }
        }
        self.momentum = buffers;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use candle::{Device, Var};

    use super::*;

    #[test]
    fn momentum_buffers_keep_no_history_of_earlier_steps() -> Result<()> {
        let w = Var::new(&[1f32, -2.0, 3.0], &Device::Cpu)?;
        let group = ParamGroup { params: vec![("w".into(), w.clone())], lr: 0.1, fixed_lr: false };
        for nesterov in [false, true] {
            let config = SgdConfig { momentum: 0.9, weight_decay: 5e-4, nesterov };
            let mut sgd = Sgd::new(vec![group.clone()], config)?;
            for _ in 0..3 {
                let loss = w.as_tensor().sqr()?.sum_all()?;
                sgd.step(&loss.backward()?)?;
            }
            // A buffer that recorded ops would hold every earlier buffer and gradient alive:
            // memory grew by a copy of the parameters per step until training was killed.
            let buf = &sgd.momentum_buffers()["w"];
            assert!(!buf.track_op(), "the momentum buffer records the ops of its updates");
        }
        Ok(())
    }
}
