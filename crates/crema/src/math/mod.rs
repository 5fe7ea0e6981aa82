//! Math kernels, the one place that knows the device (today: the CPU, with rayon and the `gemm` crate).
//!
//! Layers call these instead of writing their own loops for anything shared: matrix products, softmax and
//! log-sum-exp, and the random generator every random thing in crema draws from.

mod exp;
mod gemm;
pub mod softmax;

pub use self::exp::exp as fast_exp;
pub use self::gemm::{sgemm, Transpose};

/// The random generator of crema: ChaCha8, seedable, and with a state that can be saved and restored exactly.
pub type Rng = rand_chacha::ChaCha8Rng;

/// A generator from a seed and a stream number (such as a layer's position), independent across streams.
pub fn rng(seed: u64, stream: u64) -> Rng {
    use rand::SeedableRng;
    let mut rng = Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// `y += alpha * x`.
pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y += alpha * x;
    }
}

/// Dot product, accumulated in f64.
pub fn dot(x: &[f32], y: &[f32]) -> f64 {
    x.iter()
        .zip(y)
        .map(|(&a, &b)| f64::from(a) * f64::from(b))
        .sum()
}
