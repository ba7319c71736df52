//! `ScheduleStep::Constant`: the learning rate climbs through the warmup, then stays at `lr`
//! to the last step, as a plain `torch.optim.SGD(params, lr)` with no scheduler.

mod common;

use std::sync::{Arc, Mutex};

use common::{config, data, finished, trainer};
use simsiam_models::ResNet;
use simsiam_train::{Result, ScheduleStep, StepContext, TrainObserver, TrainView, TrainerConfig};

/// Records the learning rate of every step.
struct Rates(Arc<Mutex<Vec<f64>>>);

impl TrainObserver<ResNet> for Rates {
    fn on_step(&mut self, ctx: &mut StepContext<'_>, _: &TrainView<'_, ResNet>) -> Result<()> {
        self.0.lock().expect("lock").push(ctx.lr);
        Ok(())
    }
}

fn rates(config: TrainerConfig) -> Result<Vec<f64>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    finished(trainer(config)?.with_observer(Rates(seen.clone())).fit(&data())?);
    let out = seen.lock().expect("lock").clone();
    Ok(out)
}

#[test]
fn a_constant_schedule_keeps_the_rate_after_its_warmup() -> Result<()> {
    // Three epochs of three batches, no warmup: 0.05 at every step.
    let plain = TrainerConfig { schedule_step: ScheduleStep::Constant, warmup_epochs: 0, ..config(3) };
    assert_eq!(rates(plain)?, vec![0.05; 9]);
    // One warmup epoch: 0.05 * (1/3 + 2/3 * s/3) for steps 0, 1, 2, then 0.05.
    let warm = TrainerConfig { schedule_step: ScheduleStep::Constant, warmup_epochs: 1, ..config(3) };
    let got = rates(warm)?;
    let want = [0.05 / 3.0, 0.05 * (1.0 / 3.0 + 2.0 / 9.0), 0.05 * (1.0 / 3.0 + 4.0 / 9.0)];
    assert_eq!(got.len(), 9);
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-12, "{got:?}");
    }
    assert_eq!(got[3..], [0.05; 6]);
    // The cosine schedule of the same run decays instead.
    let cosine = rates(TrainerConfig { schedule_step: ScheduleStep::Iteration, ..config(3) })?;
    assert!(cosine[8] < 0.01, "{cosine:?}");
    Ok(())
}
