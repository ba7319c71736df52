//! One SGD update of one parameter in place, as `torch.optim.SGD` (dampening 0) computes it.
//!
//! With `d = g + wd * w`, the momentum buffer is `b = d` at the first step and
//! `b = m * b + d` after; the update is `w -= lr * b`, or `w -= lr * (d + m * b)` with
//! Nesterov momentum, or `w -= lr * d` without momentum. Written with candle's ops that is
//! seven element-wise passes and four new tensors per parameter, and `Var::set` copies the
//! result back once more: the optimiser's step was 18 ms of a ResNet-18 training step where
//! PyTorch's fused update takes 7. Here it is two parallel passes that allocate nothing after
//! the first step, with the same roundings in the same order as the candle-op formula, so
//! a training run gives the same bits either way.

use candle::{CpuStorage, DType, InplaceOp2, InplaceOp3, Layout, Result, Tensor, Var};
use rayon::prelude::*;

/// Elements per rayon task: below this, splitting costs more than the pass.
const CHUNK: usize = 1 << 15;

/// The hyper-parameters of one update.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdStep {
    /// The learning rate.
    pub lr: f64,
    /// The momentum factor; 0 keeps no buffer.
    pub momentum: f64,
    /// The L2 penalty added to the gradient.
    pub weight_decay: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
}

/// Updates `w` from `grad` in place and returns the momentum buffer after the update (`None`
/// without momentum). `buf` is the buffer returned by the previous step, `None` at the first;
/// it is updated in place where the fast path runs, so the caller keeps the returned tensor.
///
/// The fast path takes contiguous `f32` tensors on the CPU; anything else (other dtypes,
/// devices or layouts, or [`KernelOptions::stock`](crate::KernelOptions::stock)) goes
/// through candle's ops and gives the same values.
///
/// # Shapes
/// - `w`, `grad`, `buf`: one shape, any
pub fn sgd_step(w: &Var, grad: &Tensor, buf: Option<&Tensor>, p: SgdStep) -> Result<Option<Tensor>> {
    let own = |t: &Tensor| t.device().is_cpu() && t.dtype() == DType::F32 && t.is_contiguous();
    let fast = own(w.as_tensor()) && grad.device().is_cpu() && grad.dtype() == DType::F32;
    if !fast || !buf.is_none_or(own) || crate::kernel_options().stock {
        return with_candle_ops(w, grad, buf, p);
    }
    in_place(w, grad, buf, p)
}

/// [`sgd_step`]'s fast path: `w` contiguous `f32` on the CPU, `grad` `f32` on the CPU, `buf`
/// contiguous `f32` on the CPU where given.
fn in_place(w: &Var, grad: &Tensor, buf: Option<&Tensor>, p: SgdStep) -> Result<Option<Tensor>> {
    if w.elem_count() != grad.elem_count() {
        candle::bail!(
            "sgd step: a parameter of shape {:?} with a gradient of shape {:?}",
            w.shape(),
            grad.shape()
        );
    }
    // Detached: a buffer computed from a gradient that records ops would keep its graph alive.
    let grad = grad.detach().contiguous()?;
    let (wd, m, lr) = (p.weight_decay as f32, p.momentum as f32, p.lr as f32);
    let w_tensor = w.as_tensor();
    if p.momentum == 0.0 {
        w_tensor.inplace_op2(&grad, &Descend { lr, wd })?;
        return Ok(None);
    }
    let buf = match buf {
        Some(b) => {
            b.inplace_op3(&grad, w_tensor, &Accumulate { m, wd })?;
            b.clone()
        }
        None => first_buffer(&w_tensor.detach(), &grad, p.weight_decay)?,
    };
    if p.nesterov {
        w_tensor.inplace_op3(&grad, &buf, &DescendNesterov { lr, wd, m })?;
    } else {
        w_tensor.inplace_op2(&buf, &Descend { lr, wd: 0.0 })?;
    }
    Ok(Some(buf))
}

/// `d = g + w * wd`, or `g` itself when `wd` is 0, with candle's ops.
fn decayed_gradient(w: &Tensor, g: &Tensor, wd: f64) -> Result<Tensor> {
    if wd != 0.0 { g + (w * wd)? } else { Ok(g.clone()) }
}

/// The first momentum buffer, `d`, as a tensor of its own: the next step updates it in
/// place, which must not write into the gradient it came from.
fn first_buffer(w: &Tensor, g: &Tensor, wd: f64) -> Result<Tensor> {
    if wd != 0.0 { decayed_gradient(w, g, wd) } else { g.copy() }
}

/// The update with candle's ops: for other devices, dtypes and layouts.
fn with_candle_ops(w: &Var, g: &Tensor, buf: Option<&Tensor>, p: SgdStep) -> Result<Option<Tensor>> {
    // Detached: an update computed from the variable itself would record candle ops, and
    // each momentum buffer would keep every earlier one alive.
    let (w_now, g) = (w.as_detached_tensor(), g.detach());
    let d = decayed_gradient(&w_now, &g, p.weight_decay)?;
    let (update, buf) = if p.momentum != 0.0 {
        let buf = match buf {
            Some(b) => ((b * p.momentum)? + &d)?,
            // A copy where `d` is the gradient itself, as on the fast path.
            None if p.weight_decay == 0.0 => d.copy()?,
            None => d.clone(),
        };
        let update = if p.nesterov { (&d + (&buf * p.momentum)?)? } else { buf.clone() };
        (update, Some(buf))
    } else {
        (d, None)
    };
    w.set(&(&w_now - (update * p.lr)?)?)?;
    Ok(buf)
}

/// `v * k` as candle's `affine(k, 0)` rounds it (the `+ 0` turns a `-0` into `+0`).
#[inline(always)]
fn scaled(v: f32, k: f32) -> f32 {
    v * k + 0.0
}

/// `g + w * wd` as [`decayed_gradient`] computes it.
#[inline(always)]
fn decayed(g: f32, w: f32, wd: f32) -> f32 {
    if wd != 0.0 { g + scaled(w, wd) } else { g }
}

/// The contiguous `f32` elements of a storage, or an error naming the op.
fn elements<'a>(op: &str, s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&v[a..b]),
        _ => candle::bail!("{op}: takes contiguous f32 tensors"),
    }
}

/// As [`elements`], mutable.
fn elements_mut<'a>(op: &str, s: &'a mut CpuStorage, l: &Layout) -> Result<&'a mut [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&mut v[a..b]),
        _ => candle::bail!("{op}: takes contiguous f32 tensors"),
    }
}

/// Errors unless every source has as many elements as the destination.
fn same_lengths(op: &str, dst: usize, srcs: &[usize]) -> Result<()> {
    match srcs.iter().find(|&&n| n != dst) {
        Some(n) => candle::bail!("{op}: {dst} elements to update from {n}"),
        None => Ok(()),
    }
}

/// `f(dst, a, b)` for every element, on all threads, after the layout and length checks.
fn update3(
    op: &str,
    (dst, dl): (&mut CpuStorage, &Layout),
    (a, al): (&CpuStorage, &Layout),
    (b, bl): (&CpuStorage, &Layout),
    f: impl Fn(&mut f32, f32, f32) + Sync,
) -> Result<()> {
    let dst = elements_mut(op, dst, dl)?;
    let (a, b) = (elements(op, a, al)?, elements(op, b, bl)?);
    same_lengths(op, dst.len(), &[a.len(), b.len()])?;
    dst.par_chunks_mut(CHUNK).zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK))).for_each(|(d, (a, b))| {
        for ((d, &a), &b) in d.iter_mut().zip(a).zip(b) {
            f(d, a, b);
        }
    });
    Ok(())
}

/// `w = w - (x + w * wd) * lr`, in place on `w`.
struct Descend {
    lr: f32,
    wd: f32,
}

impl InplaceOp2 for Descend {
    fn name(&self) -> &'static str {
        "sgd-descend"
    }

    fn cpu_fwd(&self, w: &mut CpuStorage, wl: &Layout, x: &CpuStorage, xl: &Layout) -> Result<()> {
        let (w, x) = (elements_mut(self.name(), w, wl)?, elements(self.name(), x, xl)?);
        same_lengths(self.name(), w.len(), &[x.len()])?;
        let Self { lr, wd } = *self;
        w.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(w, x)| {
            for (w, &x) in w.iter_mut().zip(x) {
                *w -= scaled(decayed(x, *w, wd), lr);
            }
        });
        Ok(())
    }
}

/// `w = w - ((g + w * wd) + b * m) * lr`, in place on `w`: the Nesterov update.
struct DescendNesterov {
    lr: f32,
    wd: f32,
    m: f32,
}

impl InplaceOp3 for DescendNesterov {
    fn name(&self) -> &'static str {
        "sgd-descend-nesterov"
    }

    fn cpu_fwd(
        &self,
        w: &mut CpuStorage,
        wl: &Layout,
        g: &CpuStorage,
        gl: &Layout,
        b: &CpuStorage,
        bl: &Layout,
    ) -> Result<()> {
        let Self { lr, wd, m } = *self;
        update3(self.name(), (w, wl), (g, gl), (b, bl), |w, g, b| {
            *w -= scaled(decayed(g, *w, wd) + scaled(b, m), lr)
        })
    }
}

/// `b = b * m + (g + w * wd)`, in place on the momentum buffer `b`.
struct Accumulate {
    m: f32,
    wd: f32,
}

impl InplaceOp3 for Accumulate {
    fn name(&self) -> &'static str {
        "sgd-accumulate"
    }

    fn cpu_fwd(
        &self,
        b: &mut CpuStorage,
        bl: &Layout,
        g: &CpuStorage,
        gl: &Layout,
        w: &CpuStorage,
        wl: &Layout,
    ) -> Result<()> {
        let Self { m, wd } = *self;
        update3(self.name(), (b, bl), (g, gl), (w, wl), |b, g, w| *b = scaled(*b, m) + decayed(g, w, wd))
    }
}

#[cfg(test)]
mod tests {
    use candle::Device;

    use super::*;

    /// Deterministic values of both signs, with zeros, spanning a few decades.
    fn values(len: usize, seed: u32) -> Vec<f32> {
        let uniform = crate::testing::values(len, seed.into());
        uniform
            .into_iter()
            .enumerate()
            .map(|(i, v)| if i % 11 == 0 { 0.0 } else { v * 10f32.powi((i % 5) as i32 - 2) })
            .collect()
    }

    fn bits(t: &Tensor) -> Result<Vec<u32>> {
        Ok(t.flatten_all()?.to_vec1::<f32>()?.into_iter().map(f32::to_bits).collect())
    }

    /// Three steps on the fast path and three with candle's ops give the same bits, for
    /// every combination of momentum, weight decay and Nesterov, on 1 and 2 threads.
    #[test]
    fn the_fast_path_matches_the_candle_op_formula_bit_for_bit() -> Result<()> {
        let dev = Device::Cpu;
        for threads in [1, 2] {
            let pool =
                rayon::ThreadPoolBuilder::new().num_threads(threads).build().map_err(candle::Error::wrap)?;
            for len in [7, CHUNK - 1, 3 * CHUNK + 5] {
                for (momentum, weight_decay, nesterov) in [
                    (0.0, 0.0, false),
                    (0.0, 5e-4, false),
                    (0.9, 0.0, false),
                    (0.9, 5e-4, false),
                    (0.9, 1e-4, true),
                ] {
                    let p = SgdStep { lr: 0.05, momentum, weight_decay, nesterov };
                    let start = values(len, 1);
                    let fast = Var::from_tensor(&Tensor::from_vec(start.clone(), len, &dev)?)?;
                    let slow = Var::from_tensor(&Tensor::from_vec(start, len, &dev)?)?;
                    let (mut fast_buf, mut slow_buf) = (None, None);
                    for step in 0..3 {
                        let g = Tensor::from_vec(values(len, 10 + step), len, &dev)?;
                        fast_buf = pool.install(|| in_place(&fast, &g, fast_buf.as_ref(), p))?;
                        slow_buf = with_candle_ops(&slow, &g, slow_buf.as_ref(), p)?;
                        let case = format!("{threads} threads, {len} elements, {p:?}, step {step}");
                        assert_eq!(bits(fast.as_tensor())?, bits(slow.as_tensor())?, "weights: {case}");
                        match (&fast_buf, &slow_buf) {
                            (Some(f), Some(s)) => assert_eq!(bits(f)?, bits(s)?, "buffer: {case}"),
                            (None, None) => assert_eq!(momentum, 0.0, "no buffer: {case}"),
                            _ => panic!("one side kept a buffer: {case}"),
                        }
                    }
                    // The update did something: three steps moved the weights.
                    assert_ne!(
                        bits(fast.as_tensor())?,
                        values(len, 1).into_iter().map(f32::to_bits).collect::<Vec<_>>()
                    );
                }
            }
        }
        Ok(())
    }

    /// The first buffer is a tensor of its own: the next step's in-place update of the buffer
    /// must not write into the gradient it came from.
    #[test]
    fn the_first_buffer_does_not_alias_the_gradient() -> Result<()> {
        let dev = Device::Cpu;
        let w = Var::new(&[1f32, 2.0, 3.0], &dev)?;
        let g = Tensor::new(&[0.5f32, -0.5, 1.0], &dev)?;
        let p = SgdStep { lr: 0.1, momentum: 0.9, weight_decay: 0.0, nesterov: false };
        let buf = in_place(&w, &g, None, p)?;
        in_place(&w, &Tensor::new(&[1f32, 1.0, 1.0], &dev)?, buf.as_ref(), p)?;
        assert_eq!(g.to_vec1::<f32>()?, [0.5, -0.5, 1.0]);
        Ok(())
    }

    /// Non-contiguous gradients, `f64` parameters and buffers of another layout take the
    /// candle-op path or a copy and give the candle-op values.
    #[test]
    fn other_layouts_and_dtypes_give_the_same_values() -> Result<()> {
        let dev = Device::Cpu;
        let p = SgdStep { lr: 0.1, momentum: 0.9, weight_decay: 1e-2, nesterov: false };
        let w0 = Tensor::new(&[[1f32, 2.0], [3.0, 4.0]], &dev)?;
        let g = Tensor::new(&[[0.5f32, 1.0], [-1.0, 2.0]], &dev)?.t()?;
        for dtype in [DType::F32, DType::F64] {
            let (fast, slow) =
                (Var::from_tensor(&w0.to_dtype(dtype)?)?, Var::from_tensor(&w0.to_dtype(dtype)?)?);
            let g = g.to_dtype(dtype)?;
            let b1 = sgd_step(&fast, &g, None, p)?;
            let b2 = with_candle_ops(&slow, &g, None, p)?;
            sgd_step(&fast, &g, b1.as_ref(), p)?;
            with_candle_ops(&slow, &g, b2.as_ref(), p)?;
            let (f, s) = (fast.to_dtype(DType::F64)?, slow.to_dtype(DType::F64)?);
            assert_eq!(f.to_vec2::<f64>()?, s.to_vec2::<f64>()?, "{dtype:?}");
        }
        Ok(())
    }

    #[test]
    fn mismatched_lengths_are_an_error_that_names_the_shapes() -> Result<()> {
        let dev = Device::Cpu;
        let w = Var::new(&[1f32, 2.0, 3.0], &dev)?;
        let p = SgdStep { lr: 0.1, momentum: 0.0, weight_decay: 0.0, nesterov: false };
        let err = in_place(&w, &Tensor::new(&[1f32, 2.0], &dev)?, None, p).err().map(|e| e.to_string());
        assert!(err.as_deref().is_some_and(|e| e.contains("[3]") && e.contains("[2]")), "{err:?}");
        Ok(())
    }
}
