//! One optimiser step of SimSiam: forward both views, the symmetric loss (plus the online
//! probe's cross-entropy on the detached features, when there is a probe), agreement between
//! ranks on the loss and on an interruption, backward, gradient averaging and SGD.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use candle::{Tensor, Var};
use candle_nn::VarMap;
use simsiam_loss::{Similarity, symmetric_loss};
use simsiam_models::{Backbone, SimSiam};

use crate::distributed::{Communicator, average_gradients};
use crate::observer::TrainView;
use crate::{OnlineProbe, ParamGroup, Result, Sgd, TrainError, TrainState};

/// The model, its optimiser and where training stands.
pub(crate) struct Stepper<B: Backbone> {
    pub(crate) model: SimSiam<B>,
    pub(crate) varmap: VarMap,
    pub(crate) optimizer: Sgd,
    pub(crate) state: TrainState,
    pub(crate) comm: Option<Arc<dyn Communicator>>,
    /// The online linear probe, trained in the same step when there is one.
    pub(crate) probe: Option<OnlineProbe>,
    loss: Box<dyn Similarity>,
    base_lr: f64,
    interrupt: Arc<AtomicBool>,
    params: Vec<(String, Var)>,
}

/// What a step leaves for the observers.
pub(crate) struct StepOutput {
    /// The loss, averaged over ranks when data-parallel.
    pub(crate) loss: f32,
    /// The first view's prediction `p0`.
    pub(crate) prediction: Tensor,
    /// Whether training stops here: every rank agrees on it.
    pub(crate) interrupted: bool,
}

impl<B: Backbone> Stepper<B> {
    /// Trains `model` with `optimizer` (whose groups hold its parameters) from `state`;
    /// `base_lr` is the rate fixed-rate groups keep.
    pub(crate) fn new(
        model: SimSiam<B>,
        varmap: VarMap,
        loss: Box<dyn Similarity>,
        optimizer: Sgd,
        state: TrainState,
        base_lr: f64,
    ) -> Self {
        let params = optimizer.groups().iter().flat_map(|g| g.params.iter().cloned()).collect();
        Self {
            model,
            varmap,
            optimizer,
            state,
            comm: None,
            probe: None,
            loss,
            base_lr,
            interrupt: Arc::new(AtomicBool::new(false)),
            params,
        }
    }

    /// Trains `probe` from now on, its parameters an optimiser group of their own without weight
    /// decay that follows the schedule (as Lightly's benchmarks).
    pub(crate) fn attach_probe(&mut self, probe: OnlineProbe) -> Result<()> {
        let params = probe.params()?;
        let group = ParamGroup { params: params.clone(), lr: self.base_lr, fixed_lr: false };
        self.optimizer.push_group(group, 0.0)?;
        self.params.extend(params);
        self.probe = Some(probe);
        Ok(())
    }

    /// The flag an interruption (Ctrl-C) sets.
    pub(crate) fn interrupt_flag(&self) -> Arc<AtomicBool> {
        self.interrupt.clone()
    }

    /// Reads `flag` from now on.
    pub(crate) fn set_interrupt_flag(&mut self, flag: Arc<AtomicBool>) {
        self.interrupt = flag;
    }

    /// What observers see.
    pub(crate) fn view(&self) -> TrainView<'_, B> {
        TrainView {
            model: &self.model,
            varmap: &self.varmap,
            optimizer: &self.optimizer,
            state: &self.state,
            comm: self.comm.as_deref(),
            probe: self.probe.as_ref(),
        }
    }

    /// One optimiser step at learning rate `lr` on the views `x0`, `x1` of images of classes
    /// `labels` (empty when unknown). A NaN or infinite loss (on any rank) is an error, raised
    /// before the weights change. The loss reported is SimSiam's; the probe's cross-entropy,
    /// on both views' detached features with the labels repeated (as Lightly's benchmark
    /// `simsiam.py` feeds its `OnlineLinearClassifier`), is added to it for the backward pass
    /// only.
    ///
    /// On the CPU the step runs on candle's compute pool ([`candle::Device::with_context`]),
    /// so our kernels' parallel loops run on the threads that do the step's serial work: from
    /// a thread outside the pool, that thread waited beside the pool's and its serial work
    /// between two kernels competed with their idle spinning (1.28x faster this way on
    /// imagenet-r18 at two threads, docs/performance-step.md).
    pub(crate) fn step(
        &mut self,
        x0: &Tensor,
        x1: &Tensor,
        labels: &[Option<usize>],
        lr: f64,
    ) -> Result<StepOutput> {
        // Data-parallel, the step blocks in collectives: inside a shared work-stealing pool one
        // rank's step could be stolen onto another rank's waiting thread and both would wait
        // forever (in-process ranks deadlocked in `tests/data_parallel.rs`). Those steps stay
        // on the calling thread.
        if self.comm.is_some() {
            return self.step_here(x0, x1, labels, lr);
        }
        let device = x0.device().clone();
        device.with_context(|| self.step_here(x0, x1, labels, lr))
    }

    /// [`Self::step`] on the calling thread.
    fn step_here(
        &mut self,
        x0: &Tensor,
        x1: &Tensor,
        labels: &[Option<usize>],
        lr: f64,
    ) -> Result<StepOutput> {
        self.optimizer.set_lr(lr, self.base_lr);
        // The backbone's own backward pass where it has one (ResNet on the CPU): the same
        // gradients as candle's autograd, 8-11% faster in the cifar10-cpu recipe
        // (docs/performance-step.md).
        let pass = self.model.forward_views_train(x0, x1)?;
        let out = &pass.out;
        let loss = symmetric_loss(self.loss.as_ref(), &out.p0, &out.z1, &out.p1, &out.z0)?;
        let probe_loss = match &mut self.probe {
            Some(probe) if !labels.is_empty() => {
                let features = Tensor::cat(&[&out.f0, &out.f1], 0)?;
                probe.training_loss(&features, &[labels, labels].concat())?
            }
            _ => None,
        };
        let value = loss.to_dtype(candle::DType::F32)?.to_scalar::<f32>()?;
        let (value, interrupted) = self.agree(value)?;
        if !value.is_finite() {
            return Err(TrainError::NonFiniteLoss {
                loss: value,
                epoch: self.state.epoch,
                step: self.state.step,
            });
        }
        let prediction = out.p0.clone();
        let mut grads = match probe_loss {
            // The probe reads detached features: its loss adds gradients to the probe alone.
            Some(probe_loss) => pass.backward(&(loss.to_dtype(candle::DType::F32)? + probe_loss)?)?,
            None => pass.backward(&loss)?,
        };
        if let Some(comm) = &self.comm {
            average_gradients(comm, &mut grads, &self.params)?;
        }
        self.optimizer.step(&grads)?;
        self.state.step += 1;
        // Alone, the flag is read after the step; data-parallel, the value all ranks agreed on.
        let interrupted = interrupted.unwrap_or_else(|| self.interrupt.load(Ordering::SeqCst));
        Ok(StepOutput { loss: value, prediction, interrupted })
    }

    /// The loss averaged over ranks and whether any rank was interrupted, when data-parallel;
    /// the loss as it is and `None` (read the flag later) otherwise.
    fn agree(&self, loss: f32) -> Result<(f32, Option<bool>)> {
        let Some(comm) = &self.comm else { return Ok((loss, None)) };
        let flag = if self.interrupt.load(Ordering::SeqCst) { 1.0 } else { 0.0 };
        let mut values = [loss, flag];
        comm.all_reduce_sum_f32(&mut values)?;
        Ok((values[0] / comm.world_size() as f32, Some(values[1] > 0.0)))
    }
}
