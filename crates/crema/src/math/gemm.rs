//! Single-precision matrix products through the `gemm` crate: on strided matrix views ([`matmul`]), and with
//! the interface of BLAS's row-major sgemm ([`sgemm`]).

use super::Threads;

/// Whether a matrix operand is used as stored or transposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transpose {
    No,
    Yes,
}

/// Products smaller than this many multiply-adds run on one thread: splitting them costs more than it saves.
const PARALLEL_THRESHOLD: usize = 1 << 18;

/// A read-only matrix view: `rows × cols` elements of `data`, element (i, j) at `i * row_stride + j *
/// col_stride`. Views of column or row ranges and transposes cost nothing, so products can read blocks of
/// larger matrices (one group of a grouped convolution) in place.
#[derive(Debug, Clone, Copy)]
pub struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

/// A writable matrix view, as [`MatRef`].
#[derive(Debug)]
pub struct MatMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

/// Whether `rows × cols` elements at these strides lie inside `len` values.
fn fits(len: usize, rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> bool {
    rows == 0 || cols == 0 || (rows - 1) * row_stride + (cols - 1) * col_stride < len
}

impl<'a> MatRef<'a> {
    /// The row-major `rows × cols` matrix held in `data`. Panics when `data` is too short: callers check
    /// shapes before they get here.
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        assert!(data.len() >= rows * cols, "matrix data too short");
        MatRef {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose.
    pub fn t(self) -> Self {
        MatRef {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// Columns `start .. start + len`.
    pub fn columns(self, start: usize, len: usize) -> Self {
        assert!(start + len <= self.cols, "columns out of range");
        MatRef {
            data: &self.data[(start * self.col_stride).min(self.data.len())..],
            cols: len,
            ..self
        }
    }

    /// Rows `start .. start + len`.
    pub fn rows(self, start: usize, len: usize) -> Self {
        assert!(start + len <= self.rows, "rows out of range");
        MatRef {
            data: &self.data[(start * self.row_stride).min(self.data.len())..],
            rows: len,
            ..self
        }
    }
}

impl<'a> MatMut<'a> {
    /// The row-major `rows × cols` matrix held in `data` (panics when too short, as [`MatRef::new`]).
    pub fn new(data: &'a mut [f32], rows: usize, cols: usize) -> Self {
        assert!(data.len() >= rows * cols, "matrix data too short");
        MatMut {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// Columns `start .. start + len`.
    pub fn columns(self, start: usize, len: usize) -> Self {
        assert!(start + len <= self.cols, "columns out of range");
        let offset = (start * self.col_stride).min(self.data.len());
        MatMut {
            data: &mut self.data[offset..],
            cols: len,
            ..self
        }
    }

    /// Rows `start .. start + len`.
    pub fn rows(self, start: usize, len: usize) -> Self {
        assert!(start + len <= self.rows, "rows out of range");
        let offset = (start * self.row_stride).min(self.data.len());
        MatMut {
            data: &mut self.data[offset..],
            rows: len,
            ..self
        }
    }
}

/// `c = alpha * a * b + beta * c` on matrix views (`a` is `m × k`, `b` is `k × n`, `c` is `m × n`); with
/// `beta` 0 the old contents of `c` are not read. Large products are split across threads by blocks of `c`,
/// never along `k`, so results do not depend on the thread count.
///
/// Panics when the shapes disagree: callers check shapes before they get here.
pub fn matmul(c: MatMut<'_>, a: MatRef<'_>, b: MatRef<'_>, alpha: f32, beta: f32) {
    matmul_with(Threads::All, c, a, b, alpha, beta)
}

/// [`matmul`], kept on the calling thread with [`Threads::One`] (for callers that run products side by side).
pub fn matmul_with(
    threads: Threads,
    c: MatMut<'_>,
    a: MatRef<'_>,
    b: MatRef<'_>,
    alpha: f32,
    beta: f32,
) {
    let (m, n, k) = (c.rows, c.cols, a.cols);
    assert!(
        a.rows == m && b.rows == k && b.cols == n,
        "matmul shapes: {}×{} · {}×{} into {}×{}",
        a.rows,
        a.cols,
        b.rows,
        b.cols,
        c.rows,
        c.cols
    );
    assert!(
        fits(a.data.len(), a.rows, a.cols, a.row_stride, a.col_stride)
            && fits(b.data.len(), b.rows, b.cols, b.row_stride, b.col_stride)
            && fits(c.data.len(), c.rows, c.cols, c.row_stride, c.col_stride),
        "matmul view outside its data"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 || alpha == 0.0 {
        for i in 0..m {
            for j in 0..n {
                let v = &mut c.data[i * c.row_stride + j * c.col_stride];
                *v = if beta == 0.0 { 0.0 } else { *v * beta };
            }
        }
        return;
    }
    let parallelism = if threads == Threads::All
        && m * n * k >= PARALLEL_THRESHOLD
        && rayon::current_num_threads() > 1
    {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // The gemm crate computes dst = alpha_dst * dst + beta_prod * lhs * rhs, reading dst only if asked.
    // SAFETY: `fits` above guarantees that every index the strides reach lies inside its slice; `c` does not
    // alias `a` or `b` (it is a unique borrow).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.data.as_mut_ptr(),
            c.col_stride as isize,
            c.row_stride as isize,
            beta != 0.0,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            beta,
            alpha,
            false,
            false,
            false,
            parallelism,
        );
    }
}

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
    let a = match ta {
        Transpose::No => MatRef::new(a, m, k),
        Transpose::Yes => MatRef::new(a, k, m).t(),
    };
    let b = match tb {
        Transpose::No => MatRef::new(b, k, n),
        Transpose::Yes => MatRef::new(b, n, k).t(),
    };
    matmul(MatMut::new(c, m, n), a, b, alpha, beta);
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
