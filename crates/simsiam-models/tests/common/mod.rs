//! Helpers shared by the integration tests.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use candle::{DType, Device, Result, Tensor};

/// A fixture file under `tests/fixtures/`, written by `tools/golden/make_models_golden.py`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("fixtures").join(name)
}

/// All tensors of a fixture, as f32 on the CPU.
pub fn load(name: &str) -> Result<HashMap<String, Tensor>> {
    candle::safetensors::load(fixture(name), &Device::Cpu)
}

/// `||ours - reference|| / ||reference||` (the absolute norm when the reference is zero).
pub fn rel_err(ours: &Tensor, reference: &Tensor) -> Result<f64> {
    assert_eq!(ours.dims(), reference.dims(), "shape mismatch");
    let ours = ours.to_dtype(DType::F64)?;
    let reference = reference.to_dtype(DType::F64)?;
    let diff = (&ours - &reference)?.sqr()?.sum_all()?.sqrt()?.to_scalar::<f64>()?;
    let norm = reference.sqr()?.sum_all()?.sqrt()?.to_scalar::<f64>()?;
    Ok(if norm > 0.0 { diff / norm } else { diff })
}

/// Asserts `rel_err(ours, reference) < tol`, naming the tensor.
pub fn assert_close(what: &str, ours: &Tensor, reference: &Tensor, tol: f64) -> Result<()> {
    let err = rel_err(ours, reference)?;
    assert!(err < tol, "{what}: relative error {err:.3e} is not below {tol:.0e}");
    Ok(())
}

/// Collects every tensor's relative error so one run reports all mismatches, not the first.
#[derive(Default)]
pub struct Report {
    failures: Vec<String>,
    checked: usize,
}

impl Report {
    /// Records `rel_err(ours, reference)` against `tol`.
    ///
    /// A reference whose root mean square is below `zero` is zero in exact arithmetic (the
    /// gradient of a bias that a later BatchNorm removes, say) and holds only rounding noise,
    /// for which a relative error means nothing: ours must then be that small too.
    pub fn check(
        &mut self,
        what: &str,
        ours: &Tensor,
        reference: &Tensor,
        tol: f64,
        zero: f64,
    ) -> Result<()> {
        self.checked += 1;
        let n = reference.elem_count().max(1) as f64;
        let rms = |t: &Tensor| -> Result<f64> {
            Ok((t.to_dtype(DType::F64)?.sqr()?.sum_all()?.to_scalar::<f64>()? / n).sqrt())
        };
        if rms(reference)? < zero {
            let ours_rms = rms(ours)?;
            if ours_rms.is_nan() || ours_rms >= zero {
                self.failures.push(format!("{what}: zero in PyTorch, rms {ours_rms:.3e} here"));
            }
            return Ok(());
        }
        let err = rel_err(ours, reference)?;
        if err.is_nan() || err >= tol {
            self.failures.push(format!("{what}: relative error {err:.3e} is not below {tol:.0e}"));
        }
        Ok(())
    }

    /// Panics with every failure, after checking that something was compared.
    pub fn finish(self, min_checked: usize) {
        assert!(self.checked >= min_checked, "only {} tensors compared", self.checked);
        assert!(
            self.failures.is_empty(),
            "{} mismatches:\n{}",
            self.failures.len(),
            self.failures.join("\n")
        );
    }
}
