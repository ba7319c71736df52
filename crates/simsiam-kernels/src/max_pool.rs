//! 2-D max-pooling with padding and overlapping windows, forward and backward.
//!
//! Candle's `max_pool2d` has no padding and refuses the backward pass when the kernel differs
//! from the stride, so the ImageNet stem's 3x3, stride 2, padding 1 pool needs its own op.
//! It follows PyTorch's `nn.MaxPool2d` (`ceil_mode=False`, `dilation=1`): padding is -inf, the
//! gradient goes to the first maximum of each window in row-major order. On CUDA (feature
//! `cuda`) both directions run as our own kernels in `f32` (`kernels::cuda`).

use candle::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::buffer::zeroed;
use crate::{contiguous_slice, with_float};

/// The window of a 2-D max-pool, square for kernel, stride and padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxPool2dConfig {
    /// Window side.
    pub kernel: usize,
    /// Step between windows.
    pub stride: usize,
    /// Implicit -inf padding on each side.
    pub padding: usize,
}

impl MaxPool2dConfig {
    fn out_len(&self, len: usize) -> Result<usize> {
        let padded = len + 2 * self.padding;
        if self.kernel == 0 || self.stride == 0 || padded < self.kernel || 2 * self.padding > self.kernel {
            candle::bail!("max_pool2d: invalid window {self:?} for an input of extent {len}");
        }
        Ok((padded - self.kernel) / self.stride + 1)
    }
}

/// Max-pools `x` over its last two dimensions.
///
/// # Shapes
/// - `x`: `[batch, channels, h, w]`
/// - returns `[batch, channels, (h + 2p - k) / s + 1, (w + 2p - k) / s + 1]`
pub fn max_pool2d(x: &Tensor, config: MaxPool2dConfig) -> Result<Tensor> {
    x.dims4()?;
    if x.device().is_cuda() && x.dtype() != DType::F32 {
        // The CUDA kernels are f32 only; a max of bf16/f16 values is exact in f32.
        return max_pool2d(&x.to_dtype(DType::F32)?, config)?.to_dtype(x.dtype());
    }
    x.contiguous()?.apply_op1(MaxPool2d(config))
}

/// The gradient of [`max_pool2d`] with respect to its input `x`, given `dy`, the gradient of
/// its output: each window's gradient goes to its first maximum. Not differentiable.
///
/// # Shapes
/// - `x`: `[batch, channels, h, w]`, `dy`: [`max_pool2d`]'s output shape
/// - returns `x`'s shape
pub fn max_pool2d_backward(x: &Tensor, dy: &Tensor, config: MaxPool2dConfig) -> Result<Tensor> {
    x.dims4()?;
    x.contiguous()?.apply_op2_no_bwd(&dy.contiguous()?, &MaxPool2dBackward(config))
}

struct MaxPool2d(MaxPool2dConfig);

/// Input geometry shared by the forward and backward kernels.
struct Geometry {
    planes: usize,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
}

impl Geometry {
    fn new(shape: &Shape, c: MaxPool2dConfig) -> Result<Self> {
        let (n, ch, h, w) = shape.dims4()?;
        Ok(Self { planes: n * ch, h, w, oh: c.out_len(h)?, ow: c.out_len(w)? })
    }

    /// `(planes, h, w, oh, ow)`, for the CUDA kernels.
    #[cfg(feature = "cuda")]
    fn dims(&self) -> (usize, usize, usize, usize, usize) {
        (self.planes, self.h, self.w, self.oh, self.ow)
    }

    /// The input rows (or columns) `start..end` of output row (or column) `o` along an axis of
    /// extent `len`.
    fn window(&self, o: usize, len: usize, c: MaxPool2dConfig) -> (usize, usize) {
        ((o * c.stride).saturating_sub(c.padding), (o * c.stride + c.kernel - c.padding).min(len))
    }

    /// The index in the plane of the first maximum of output cell (oy, ox).
    fn argmax<T: PartialOrd + Copy>(&self, plane: &[T], c: MaxPool2dConfig, oy: usize, ox: usize) -> usize {
        let (y0, y1) = self.window(oy, self.h, c);
        let (x0, x1) = self.window(ox, self.w, c);
        let mut best = y0 * self.w + x0;
        for y in y0..y1 {
            for x in x0..x1 {
                let i = y * self.w + x;
                // Strictly greater keeps the first maximum, as PyTorch's CPU kernel does.
                if plane[i] > plane[best] {
                    best = i;
                }
            }
        }
        best
    }
}

/// Each output is the value at [`Geometry::argmax`]: a fold from the window's first element
/// that takes only strictly greater values gives the same value (NaN included), without the
/// index bookkeeping. Planes run in parallel, each on its own, so the bits do not depend on
/// the number of threads.
fn forward<T: PartialOrd + Copy + Default + Send + Sync>(
    x: &[T],
    g: &Geometry,
    c: MaxPool2dConfig,
) -> Vec<T> {
    let mut out = zeroed(g.planes * g.oh * g.ow, T::default());
    let planes = out.par_chunks_mut((g.oh * g.ow).max(1)).zip(x.par_chunks_exact((g.h * g.w).max(1)));
    planes.for_each(|(dst, plane)| {
        for oy in 0..g.oh {
            let (y0, y1) = g.window(oy, g.h, c);
            let rows = &plane[y0 * g.w..y1 * g.w];
            for ox in 0..g.ow {
                let (x0, x1) = g.window(ox, g.w, c);
                let mut best = rows[x0];
                for row in rows.chunks_exact(g.w) {
                    for &v in &row[x0..x1] {
                        if v > best {
                            best = v;
                        }
                    }
                }
                dst[oy * g.ow + ox] = best;
            }
        }
    });
    out
}

/// Planes in parallel, as [`forward`]: each output gradient goes to its window's argmax.
fn backward<T>(x: &[T], grad: &[T], g: &Geometry, c: MaxPool2dConfig) -> Vec<T>
where
    T: PartialOrd + Copy + Default + std::ops::AddAssign + Send + Sync,
{
    let mut out = zeroed(x.len(), T::default());
    let (plane, out_plane) = ((g.h * g.w).max(1), (g.oh * g.ow).max(1));
    let planes =
        out.par_chunks_mut(plane).zip(x.par_chunks_exact(plane)).zip(grad.par_chunks_exact(out_plane));
    planes.for_each(|((dst, plane), grad)| {
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                dst[g.argmax(plane, c, oy, ox)] += grad[oy * g.ow + ox];
            }
        }
    });
    out
}

impl CustomOp1 for MaxPool2d {
    fn name(&self) -> &'static str {
        "max-pool2d"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = Geometry::new(layout.shape(), self.0)?;
        let (n, ch, _, _) = layout.shape().dims4()?;
        let shape = Shape::from((n, ch, g.oh, g.ow));
        let name = self.name();
        let out = with_float!(storage, name, |T| forward(
            contiguous_slice::<T>(storage, layout, name, "input")?,
            &g,
            self.0
        ));
        Ok((out, shape))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        storage: &candle::CudaStorage,
        layout: &Layout,
    ) -> Result<(candle::CudaStorage, Shape)> {
        let g = Geometry::new(layout.shape(), self.0)?;
        let (n, ch, _, _) = layout.shape().dims4()?;
        let out = crate::cuda::max_pool_fwd(storage, layout, self.0, g.dims())?;
        Ok((out, Shape::from((n, ch, g.oh, g.ow))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let grad = arg.apply_op2_no_bwd(&grad_res.contiguous()?, &MaxPool2dBackward(self.0))?;
        Ok(Some(grad))
    }
}

/// The gradient of [`MaxPool2d`] with respect to its input, given the input and the
/// gradient of the output.
struct MaxPool2dBackward(MaxPool2dConfig);

impl CustomOp2 for MaxPool2dBackward {
    fn name(&self) -> &'static str {
        "max-pool2d-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = Geometry::new(l1.shape(), self.0)?;
        if l2.shape().elem_count() != g.planes * g.oh * g.ow {
            candle::bail!("max_pool2d backward: gradient shape {:?} does not match", l2.shape());
        }
        let name = self.name();
        let out = with_float!(s1, name, |T| backward(
            contiguous_slice::<T>(s1, l1, name, "input")?,
            contiguous_slice::<T>(s2, l2, name, "gradient")?,
            &g,
            self.0,
        ));
        Ok((out, l1.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle::CudaStorage,
        l1: &Layout,
        s2: &candle::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle::CudaStorage, Shape)> {
        let g = Geometry::new(l1.shape(), self.0)?;
        if l2.shape().elem_count() != g.planes * g.oh * g.ow {
            candle::bail!("max_pool2d backward: gradient shape {:?} does not match", l2.shape());
        }
        let out = crate::cuda::max_pool_bwd(s1, l1, s2, l2, self.0, g.dims())?;
        Ok((out, l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use candle::{DType, Device, Var};

    use super::*;

    const STEM: MaxPool2dConfig = MaxPool2dConfig { kernel: 3, stride: 2, padding: 1 };

    #[test]
    fn forward_takes_the_value_at_the_first_maximum_on_ties_and_nans() -> Result<()> {
        // Few distinct values make ties; NaNs test the strict comparison.
        let mut values: Vec<f32> = (0..2 * 3 * 9 * 7).map(|i| ((i * 37 % 11) % 4) as f32 - 1.5).collect();
        for i in (5..values.len()).step_by(17) {
            values[i] = f32::NAN;
        }
        for config in [
            STEM,
            MaxPool2dConfig { kernel: 2, stride: 2, padding: 0 },
            MaxPool2dConfig { kernel: 3, stride: 1, padding: 1 },
        ] {
            let g = Geometry::new(&Shape::from((2, 3, 9, 7)), config)?;
            let ours = forward(&values, &g, config);
            let mut expected = Vec::new();
            for plane in values.chunks_exact(9 * 7) {
                for oy in 0..g.oh {
                    for ox in 0..g.ow {
                        expected.push(plane[g.argmax(plane, config, oy, ox)]);
                    }
                }
            }
            let same = ours.iter().zip(&expected).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same && ours.len() == expected.len(), "{config:?}");
        }
        Ok(())
    }

    #[test]
    fn forward_on_a_ramp() -> Result<()> {
        // 4x4 ramp 0..16: with padding 1, windows end at rows/cols {1, 3}.
        let x = Tensor::arange(0f32, 16.0, &Device::Cpu)?.reshape((1, 1, 4, 4))?;
        let y = max_pool2d(&x, STEM)?;
        assert_eq!(y.dims(), [1, 1, 2, 2]);
        assert_eq!(y.flatten_all()?.to_vec1::<f32>()?, [5.0, 7.0, 13.0, 15.0]);
        Ok(())
    }

    #[test]
    fn negative_inputs_ignore_padding() -> Result<()> {
        let x = (Tensor::arange(0f32, 9.0, &Device::Cpu)?.reshape((1, 1, 3, 3))? - 100.0)?;
        let y = max_pool2d(&x, STEM)?;
        assert_eq!(y.flatten_all()?.to_vec1::<f32>()?, [-96.0, -95.0, -93.0, -92.0]);
        Ok(())
    }

    #[test]
    fn gradient_accumulates_on_overlaps_and_picks_the_first_tie() -> Result<()> {
        // A constant input: every window's first element gets its window's gradient.
        let x = Var::from_tensor(&Tensor::ones((1, 1, 3, 3), DType::F32, &Device::Cpu)?)?;
        let y = max_pool2d(x.as_tensor(), STEM)?; // 2x2 windows starting at (0,0),(0,1),(1,0),(1,1)
        let grads = y.sum_all()?.backward()?;
        let g = grads.get(x.as_tensor()).expect("gradient").flatten_all()?.to_vec1::<f32>()?;
        assert_eq!(g, [1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
        Ok(())
    }

    #[test]
    fn gradient_matches_finite_differences() -> Result<()> {
        let dev = Device::Cpu;
        // Distinct values so the argmax is stable under a small perturbation.
        let base: Vec<f64> = (0..2 * 3 * 7 * 6).map(|i| ((i * 37) % 101) as f64 * 0.1).collect();
        let weights: Vec<f64> = (0..2 * 3 * 4 * 3).map(|i| 1.0 + (i % 5) as f64).collect();
        let w = Tensor::from_vec(weights, (2, 3, 4, 3), &dev)?;
        let f = |v: &[f64]| -> Result<f64> {
            let x = Tensor::from_slice(v, (2, 3, 7, 6), &dev)?;
            (max_pool2d(&x, STEM)? * &w)?.sum_all()?.to_scalar::<f64>()
        };
        let x = Var::from_tensor(&Tensor::from_slice(&base, (2, 3, 7, 6), &dev)?)?;
        let loss = (max_pool2d(x.as_tensor(), STEM)? * &w)?.sum_all()?;
        let g = loss.backward()?.get(x.as_tensor()).expect("gradient").flatten_all()?.to_vec1::<f64>()?;
        for i in [0, 5, 17, 40, 83, 200, 251] {
            let mut plus = base.clone();
            plus[i] += 1e-4;
            let mut minus = base.clone();
            minus[i] -= 1e-4;
            let numeric = (f(&plus)? - f(&minus)?) / 2e-4;
            assert!((numeric - g[i]).abs() < 1e-6, "index {i}: {numeric} vs {}", g[i]);
        }
        Ok(())
    }

    #[test]
    fn invalid_windows_are_errors() {
        let x = Tensor::ones((1, 1, 2, 2), DType::F32, &Device::Cpu).expect("ones");
        let bad = MaxPool2dConfig { kernel: 3, stride: 0, padding: 1 };
        assert!(max_pool2d(&x, bad).is_err());
        let bad = MaxPool2dConfig { kernel: 2, stride: 1, padding: 2 };
        assert!(max_pool2d(&x, bad).is_err());
    }
}
