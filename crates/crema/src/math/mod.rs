//! Math kernels, the one place that knows the device (today: the CPU, with rayon and the `gemm` crate).
//!
//! Layers call these instead of writing their own loops for anything shared: matrix products (on strided
//! views), convolution patches ([`conv`]), softmax and log-sum-exp, label checks, and the random generator every
//! random thing in crema draws from.

pub mod conv;
pub mod convolve;
mod exp;
pub mod focal;
mod gemm;
pub mod labels;
pub mod softmax;

pub use self::exp::exp as fast_exp;
pub use self::gemm::{matmul, matmul_with, sgemm, MatMut, MatRef, Transpose};

/// Whether a kernel may split its work across rayon's threads, or must stay on the calling thread (because the
/// caller already runs it as one piece of a parallel loop).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threads {
    One,
    All,
}

/// Calls `f(i, block)` for every `block`-long piece of `data` (the last may be shorter), in parallel or not.
pub(crate) fn for_each_block(
    threads: Threads,
    data: &mut [f32],
    block: usize,
    f: impl Fn(usize, &mut [f32]) + Send + Sync,
) {
    use rayon::prelude::*;
    match threads {
        Threads::One => data
            .chunks_mut(block)
            .enumerate()
            .for_each(|(i, b)| f(i, b)),
        Threads::All => data
            .par_chunks_mut(block)
            .enumerate()
            .for_each(|(i, b)| f(i, b)),
    }
}

/// The random generator of crema: ChaCha8, seedable, and with a state that can be saved and restored exactly.
pub type Rng = rand_chacha::ChaCha8Rng;

/// A generator from a seed and a stream number (such as a layer's position), independent across streams.
pub fn rng(seed: u64, stream: u64) -> Rng {
    use rand::SeedableRng;
    let mut rng = Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// The state of a generator as bytes (seed, stream, position): [`rng_from_state`] continues it exactly.
pub fn rng_state(rng: &Rng) -> Vec<u8> {
    let mut bytes = rng.get_seed().to_vec();
    bytes.extend_from_slice(&rng.get_stream().to_le_bytes());
    bytes.extend_from_slice(&rng.get_word_pos().to_le_bytes());
    bytes
}

/// A generator continuing from `bytes` written by [`rng_state`]; None when they are not such a state.
pub fn rng_from_state(bytes: &[u8]) -> Option<Rng> {
    use rand::SeedableRng;
    if bytes.len() != 32 + 8 + 16 {
        return None;
    }
    let seed: [u8; 32] = bytes[..32].try_into().ok()?;
    let stream = u64::from_le_bytes(bytes[32..40].try_into().ok()?);
    let position = u128::from_le_bytes(bytes[40..56].try_into().ok()?);
    let mut rng = Rng::from_seed(seed);
    rng.set_stream(stream);
    rng.set_word_pos(position);
    Some(rng)
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

#[cfg(test)]
mod tests {
    use rand::Rng as _;

    #[test]
    fn a_saved_generator_continues_exactly() {
        let mut rng = super::rng(5, 3);
        let _: u64 = rng.random();
        let saved = super::rng_state(&rng);
        let expected: Vec<u32> = (0..5).map(|_| rng.random()).collect();
        let mut restored = super::rng_from_state(&saved).unwrap();
        let got: Vec<u32> = (0..5).map(|_| restored.random()).collect();
        assert_eq!(got, expected);
        assert!(super::rng_from_state(&saved[..10]).is_none());
    }
}
