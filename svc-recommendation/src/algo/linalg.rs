//! The little dense linear algebra the personal model needs: inverting a symmetric
//! positive-definite matrix (a regularised Gram matrix) of up to a few thousand rows.

/// Pivots swept together: each pass over the matrix applies this many at once, so the
/// matrix (22 MB of f64 at 1,682 items) is streamed `n / 16` times instead of `n`.
const BLOCK: usize = 16;

/// A square row-major matrix.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Square {
    pub n: usize,
    pub data: Vec<f64>,
}

impl Square {
    pub fn zeros(n: usize) -> Square {
        Square {
            n,
            data: vec![0.0; n * n],
        }
    }

    pub fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.n..(i + 1) * self.n]
    }

    /// Inverts a symmetric positive-definite matrix in place by blocked Gauss-Jordan
    /// elimination (the sweep operator), without pivoting: safe for SPD matrices, whose
    /// pivot blocks are Schur complements and so positive definite. Returns false,
    /// leaving garbage, when a pivot is not positive.
    ///
    /// Sweeping the pivot block `K` maps `[A_KK A_KJ; A_IK A_IJ]` to
    /// `[A_KK⁻¹  A_KK⁻¹A_KJ; -A_IK A_KK⁻¹  A_IJ - A_IK A_KK⁻¹ A_KJ]`, the same as `|K|`
    /// scalar Gauss-Jordan steps; sweeping every block leaves `A⁻¹`.
    pub fn invert_spd(&mut self) -> bool {
        let n = self.n;
        let mut pivot_block = Vec::with_capacity(BLOCK * BLOCK);
        let mut panel = vec![0.0; BLOCK * n];
        let mut factors = [0.0f64; BLOCK];
        let mut start = 0;
        while start < n {
            let b = BLOCK.min(n - start);
            let end = start + b;
            pivot_block.clear();
            for r in start..end {
                pivot_block.extend_from_slice(&self.data[r * n + start..r * n + end]);
            }
            if !gauss_jordan(&mut pivot_block, b) {
                return false;
            }
            // The pivot rows after the sweep: A_KK⁻¹ · A_K,: with A_KK⁻¹ in the K columns.
            let panel = &mut panel[..b * n];
            panel.fill(0.0);
            for (l, out) in panel.chunks_exact_mut(n).enumerate() {
                for (m, &coef) in pivot_block[l * b..(l + 1) * b].iter().enumerate() {
                    for (o, &a) in out.iter_mut().zip(self.row(start + m)) {
                        *o += coef * a;
                    }
                }
                out[start..end].copy_from_slice(&pivot_block[l * b..(l + 1) * b]);
            }
            for (i, row) in self.data.chunks_exact_mut(n).enumerate() {
                if (start..end).contains(&i) {
                    continue;
                }
                // Zeroing the K columns first makes the update leave -A_iK·A_KK⁻¹ there.
                factors[..b].copy_from_slice(&row[start..end]);
                row[start..end].fill(0.0);
                subtract_combination(row, &factors[..b], panel);
            }
            self.data[start * n..end * n].copy_from_slice(panel);
            start = end;
        }
        true
    }
}

/// `row -= Σ_l factors[l] · rows[l]` (`rows` holds `factors.len()` rows of `row.len()`),
/// four rows per pass so `row` is loaded and stored a quarter as often.
fn subtract_combination(row: &mut [f64], factors: &[f64], rows: &[f64]) {
    let n = row.len();
    let mut quads = factors.chunks_exact(4).zip(rows.chunks_exact(4 * n));
    for (f, r) in quads.by_ref() {
        let (r0, rest) = r.split_at(n);
        let (r1, rest) = rest.split_at(n);
        let (r2, r3) = rest.split_at(n);
        for ((((x, &a), &b), &c), &d) in row.iter_mut().zip(r0).zip(r1).zip(r2).zip(r3) {
            *x -= f[0] * a + f[1] * b + f[2] * c + f[3] * d;
        }
    }
    let done = factors.len() / 4 * 4;
    for (&f, r) in factors[done..].iter().zip(rows[done * n..].chunks_exact(n)) {
        for (x, &a) in row.iter_mut().zip(r) {
            *x -= f * a;
        }
    }
}

/// Scalar in-place Gauss-Jordan inversion of the `n × n` row-major `a`, no pivoting.
fn gauss_jordan(a: &mut [f64], n: usize) -> bool {
    let mut pivot_row = vec![0.0; n];
    for k in 0..n {
        let pivot = a[k * n + k];
        if pivot.is_nan() || pivot <= 0.0 {
            return false;
        }
        let inv = 1.0 / pivot;
        let row_k = &mut a[k * n..(k + 1) * n];
        row_k[k] = 1.0;
        for x in row_k.iter_mut() {
            *x *= inv;
        }
        pivot_row.copy_from_slice(row_k);
        for (i, row) in a.chunks_exact_mut(n).enumerate() {
            let factor = row[k];
            if i == k || factor == 0.0 {
                continue;
            }
            row[k] = 0.0;
            for (x, &p) in row.iter_mut().zip(&pivot_row) {
                *x -= factor * p;
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_inverse(a: &[f64], inverse: &Square) {
        let n = inverse.n;
        for i in 0..n {
            for j in 0..n {
                let product: f64 = (0..n).map(|k| a[i * n + k] * inverse.data[k * n + j]).sum();
                let identity = if i == j { 1.0 } else { 0.0 };
                assert!((product - identity).abs() < 1e-9, "({i},{j}) = {product}");
            }
        }
    }

    #[test]
    fn inverts_a_small_symmetric_positive_definite_matrix() {
        let a = [4.0, 2.0, 0.6, 2.0, 5.0, 1.0, 0.6, 1.0, 3.0];
        let mut m = Square {
            n: 3,
            data: a.to_vec(),
        };
        assert!(m.invert_spd());
        assert_inverse(&a, &m);
        let mut singular = Square::zeros(2);
        assert!(!singular.invert_spd());
    }

    #[test]
    fn inverts_across_several_blocks_and_a_partial_one() {
        // A = MᵀM + I for a pseudo-random M (splitmix64): SPD, 2.5 blocks wide.
        let n = 2 * BLOCK + BLOCK / 2;
        let mut state = 42u64;
        let mut next = || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        let m: Vec<f64> = (0..n * n).map(|_| next()).collect();
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] = (0..n).map(|k| m[k * n + i] * m[k * n + j]).sum::<f64>()
                    + if i == j { 1.0 } else { 0.0 };
            }
        }
        let mut inverse = Square { n, data: a.clone() };
        assert!(inverse.invert_spd());
        assert_inverse(&a, &inverse);
    }
}
