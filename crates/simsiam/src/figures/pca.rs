//! Principal component analysis onto two dimensions, in `f64`: deterministic where Lightly's
//! tutorial uses sklearn's random projection.

use anyhow::{Result, bail};

/// The two leading principal components of `n` embeddings of dimension `dim` (row-major in
/// `values`), and every embedding's coordinates along them.
///
/// Orthogonal (subspace) iteration on the covariance of the centred rows, applied as
/// `X^T (X v)` so the `dim x dim` matrix is never formed; the start is a fixed pseudo-random
/// pair and each component's largest coordinate is made positive, so the answer does not
/// depend on anything but the data. Directions without variance project to 0.
///
/// # Errors
/// When `dim` is 0 or `values` is not `n * dim` long for some `n >= 1`.
pub fn pca_2d(values: &[f32], dim: usize) -> Result<Vec<[f64; 2]>> {
    if dim == 0 || values.is_empty() || values.len() % dim != 0 {
        bail!("PCA needs n x d values with n, d >= 1: got {} values of dimension {dim}", values.len());
    }
    let n = values.len() / dim;
    let mut mean = vec![0f64; dim];
    for row in values.chunks_exact(dim) {
        mean.iter_mut().zip(row).for_each(|(m, &v)| *m += f64::from(v) / n as f64);
    }
    let centred: Vec<f64> = values.iter().enumerate().map(|(i, &v)| f64::from(v) - mean[i % dim]).collect();
    let project = |v: &[f64]| -> Vec<f64> {
        centred.chunks_exact(dim).map(|row| row.iter().zip(v).map(|(a, b)| a * b).sum()).collect()
    };
    // C v = X^T (X v), up to the factor 1 / (n - 1), which changes no direction.
    let covariance_times = |v: &[f64]| -> Vec<f64> {
        let xv = project(v);
        let mut out = vec![0f64; dim];
        for (row, s) in centred.chunks_exact(dim).zip(&xv) {
            out.iter_mut().zip(row).for_each(|(o, a)| *o += a * s);
        }
        out
    };
    let mut state = 0x5eed_f9ca_u64;
    let mut start = || -> Vec<f64> {
        (0..dim)
            .map(|_| (simsiam_augment::rng::splitmix64(&mut state) >> 11) as f64 / (1u64 << 53) as f64 - 0.5)
            .collect()
    };
    let mut basis = [start(), start()];
    orthonormalize(&mut basis, &[start(), start()]);
    for _ in 0..300 {
        let mut next = [covariance_times(&basis[0]), covariance_times(&basis[1])];
        orthonormalize(&mut next, &basis);
        let change = (0..2).map(|k| 1.0 - dot(&next[k], &basis[k]).abs()).fold(0f64, f64::max);
        basis = next;
        if change < 1e-12 {
            break;
        }
    }
    for v in &mut basis {
        let largest = v.iter().copied().fold(0f64, |m, x| if x.abs() > m.abs() { x } else { m });
        if largest < 0.0 {
            v.iter_mut().for_each(|x| *x = -*x);
        }
    }
    let (a, b) = (project(&basis[0]), project(&basis[1]));
    Ok(a.into_iter().zip(b).map(|(a, b)| [a, b]).collect())
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Gram-Schmidt on `vs`; a vector that vanishes (no variance left) is replaced by the matching
/// `fallback`, orthogonalised in turn, so the basis stays orthonormal.
fn orthonormalize(vs: &mut [Vec<f64>; 2], fallback: &[Vec<f64>; 2]) {
    for k in 0..2 {
        let mut chosen = vec![0f64; vs[k].len()];
        for mut v in [vs[k].clone(), fallback[k].clone(), fallback[1 - k].clone()] {
            let before = dot(&v, &v).sqrt();
            if k == 1 {
                let d = dot(&v, &vs[0]);
                v.iter_mut().zip(&vs[0]).for_each(|(x, y)| *x -= d * y);
            }
            let norm = dot(&v, &v).sqrt();
            if before > 0.0 && norm > 1e-9 * before {
                chosen = v.into_iter().map(|x| x / norm).collect();
                break;
            }
        }
        // Still zero only in one dimension, where no second direction exists.
        vs[k] = chosen;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Points `3 t u + 1 s w + c` for a grid of (t, s), with orthonormal u, w in 4-D: the first
    /// component is u, the second w, and the coordinates are (3t, s) up to the centre.
    #[test]
    fn finds_the_planted_directions() -> Result<()> {
        let (u, w) = ([0.5f64, 0.5, 0.5, 0.5], [0.5f64, -0.5, 0.5, -0.5]);
        let centre = [1.0, -2.0, 0.5, 3.0];
        let mut values = Vec::new();
        let mut expected = Vec::new();
        for t in -3..=3 {
            for s in -2..=2 {
                let (t, s) = (f64::from(t), f64::from(s));
                values.extend((0..4).map(|j| (3.0 * t * u[j] + s * w[j] + centre[j]) as f32));
                expected.push([3.0 * t, s]);
            }
        }
        let got = pca_2d(&values, 4)?;
        // Signs are fixed by the largest coordinate of each component: u's first (all equal,
        // the first wins) and w's first are positive, as planted.
        for (g, e) in got.iter().zip(&expected) {
            assert!((g[0] - e[0]).abs() < 1e-5 && (g[1] - e[1]).abs() < 1e-5, "{g:?} vs {e:?}");
        }
        assert_eq!(pca_2d(&values, 4)?, got, "not deterministic");
        Ok(())
    }

    #[test]
    fn degenerate_inputs_project_to_zero_or_are_errors() -> Result<()> {
        assert_eq!(pca_2d(&[1.0, 2.0, 1.0, 2.0], 2)?, [[0.0, 0.0], [0.0, 0.0]]);
        let line = pca_2d(&[0.0, 1.0, 2.0], 1)?;
        assert!((line[0][0] + 1.0).abs() < 1e-12 && (line[2][0] - 1.0).abs() < 1e-12, "{line:?}");
        assert!(line.iter().all(|p| p[1] == 0.0));
        assert!(pca_2d(&[1.0, 2.0, 3.0], 2).is_err());
        assert!(pca_2d(&[], 2).is_err());
        assert!(pca_2d(&[1.0], 0).is_err());
        Ok(())
    }
}
