//! Single-precision matrix products through the `gemm` crate, with the interface of BLAS's row-major sgemm.

/// Whether a matrix operand is used as stored or transposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transpose {
    No,
    Yes,
}

/// Products smaller than this many multiply-adds run on one thread: splitting them costs more than it saves.
const PARALLEL_THRESHOLD: usize = 1 << 18;

/// `c = alpha * op(a) * op(b) + beta * c` with row-major storage: `op(a)` is `m × k`, `op(b)` is `k × n`, `c` is
/// `m × n`. A transposed operand is stored as its transpose (`a` as `k × m` when `ta` is [`Transpose::Yes`]).
///
/// Panics when a slice is shorter than its dimensions say: callers check shapes before they get here.
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    ta: Transpose,
    tb: Transpose,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    b: &[f32],
    beta: f32,
    c: &mut [f32],
) {
    assert!(
        a.len() >= m * k && b.len() >= k * n && c.len() >= m * n,
        "sgemm operand too short"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 || alpha == 0.0 {
        if beta == 0.0 {
            c[..m * n].fill(0.0);
        } else {
            c[..m * n].iter_mut().for_each(|v| *v *= beta);
        }
        return;
    }
    // Element (i, l) of op(a): row stride and column stride of the stored matrix.
    let (a_rs, a_cs) = match ta {
        Transpose::No => (k as isize, 1),
        Transpose::Yes => (1, m as isize),
    };
    let (b_rs, b_cs) = match tb {
        Transpose::No => (n as isize, 1),
        Transpose::Yes => (1, k as isize),
    };
    let parallelism = if m * n * k >= PARALLEL_THRESHOLD && rayon::current_num_threads() > 1 {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // The gemm crate computes dst = alpha_dst * dst + beta_prod * lhs * rhs, reading dst only if asked.
    // SAFETY: the asserts above guarantee every index the strides reach is inside its slice; `c` does not
    // alias `a` or `b` (it is a unique borrow).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            beta != 0.0,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            beta,
            alpha,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(
        ta: Transpose,
        tb: Transpose,
        m: usize,
        n: usize,
        k: usize,
        a: &[f32],
        b: &[f32],
    ) -> Vec<f32> {
        let at = |i: usize, l: usize| {
            if ta == Transpose::No {
                a[i * k + l]
            } else {
                a[l * m + i]
            }
        };
        let bt = |l: usize, j: usize| {
            if tb == Transpose::No {
                b[l * n + j]
            } else {
                b[j * k + l]
            }
        };
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|l| at(i, l) * bt(l, j)).sum();
            }
        }
        c
    }

    #[test]
    fn matches_the_definition_for_every_transpose() {
        let (m, n, k) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|v| v as f32 * 0.5 - 3.0).collect();
        let b: Vec<f32> = (0..k * n).map(|v| (v as f32).sin()).collect();
        for ta in [Transpose::No, Transpose::Yes] {
            for tb in [Transpose::No, Transpose::Yes] {
                let expected = naive(ta, tb, m, n, k, &a, &b);
                let mut c = vec![1.0; m * n];
                sgemm(ta, tb, m, n, k, 2.0, &a, &b, 0.5, &mut c);
                for (got, want) in c.iter().zip(&expected) {
                    assert!(
                        (got - (2.0 * want + 0.5)).abs() < 1e-4,
                        "{ta:?} {tb:?}: {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn beta_zero_ignores_old_contents() {
        let mut c = vec![f32::NAN; 4];
        sgemm(
            Transpose::No,
            Transpose::No,
            2,
            2,
            1,
            1.0,
            &[1.0, 2.0],
            &[3.0, 4.0],
            0.0,
            &mut c,
        );
        assert_eq!(c, [3.0, 4.0, 6.0, 8.0]);
    }
}
