//! Vectorizable `exp` and `ln` for f32, written without branches or library calls so that loops over slices
//! compile to SIMD code.
//!
//! - `exp`: range reduction to `2^n · e^r` with `|r| ≤ ln2 / 2` and a degree-6 polynomial (Cephes'
//!   coefficients), within about 2 ulp where `e^x` is a normal float.
//! - `ln`: `x = m · 2^e` with `m` in `[√½, √2)` and a degree-9 polynomial in `m − 1` (Cephes' coefficients),
//!   within about 2 ulp for normal positive `x`.

const LOG2_E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split in two so that `n · ln2` is exact in the high part.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Adding and subtracting 1.5 · 2^23 rounds a float to the nearest integer (for |x| < 2^22).
const ROUND_MAGIC: f32 = 12_582_912.0;
/// Inputs are clamped to where the result is a finite normal float.
const MAX_INPUT: f32 = 88.376_26;
const MIN_INPUT: f32 = -87.336_54;

/// `a · b + c`, fused when `FMA` (callers compiled for CPUs with FMA pass true), else two operations.
#[inline(always)]
pub(crate) fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// `e^x`, within ~2 ulp for `x` in [-87.3, 88.4]; inputs below give ~1.2e-38 instead of smaller values or 0,
/// inputs above give ~2.4e38 instead of infinity. NaN gives an unspecified value.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    exp_with::<false>(x)
}

/// [`exp`] with fused multiply-adds when `FMA` (only for code compiled for CPUs that have them).
#[inline(always)]
pub(crate) fn exp_with<const FMA: bool>(x: f32) -> f32 {
    let x = if x > MIN_INPUT { x } else { MIN_INPUT };
    let x = if x < MAX_INPUT { x } else { MAX_INPUT };
    let shifted = madd::<FMA>(x, LOG2_E, ROUND_MAGIC);
    let n = shifted - ROUND_MAGIC;
    let r = madd::<FMA>(-n, LN2_LO, madd::<FMA>(-n, LN2_HI, x));
    let p = 1.987_569_1e-4;
    let p = madd::<FMA>(p, r, 1.398_199_9e-3);
    let p = madd::<FMA>(p, r, 8.333_452e-3);
    let p = madd::<FMA>(p, r, 4.166_579_6e-2);
    let p = madd::<FMA>(p, r, 1.666_666_5e-1);
    let p = madd::<FMA>(p, r, 0.5);
    let e_r = madd::<FMA>(p, r * r, r + 1.0);
    // The low bits of `shifted` hold n as an integer: build 2^n from them with integer operations only (a
    // float-to-int cast would saturate lane by lane and stop the loop from vectorizing).
    let n_bits = shifted.to_bits().wrapping_sub(ROUND_MAGIC.to_bits());
    let scale = f32::from_bits(n_bits.wrapping_add(127) << 23);
    e_r * scale
}

/// [`exp_with`] on eight lanes at once, for inputs at most 0 (softmax's scores less their maximum): the same
/// operations in the same order, so the same values as the scalar code, without the upper clamp.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(crate) fn exp_nonpositive_avx2(x: core::arch::x86_64::__m256) -> core::arch::x86_64::__m256 {
    use core::arch::x86_64::*;
    let x = _mm256_max_ps(x, _mm256_set1_ps(MIN_INPUT));
    let magic = _mm256_set1_ps(ROUND_MAGIC);
    let shifted = _mm256_fmadd_ps(x, _mm256_set1_ps(LOG2_E), magic);
    let n = _mm256_sub_ps(shifted, magic);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
    let p = _mm256_set1_ps(1.987_569_1e-4);
    let p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.398_199_9e-3));
    let p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.333_452e-3));
    let p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.166_579_6e-2));
    let p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.666_666_5e-1));
    let p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5));
    let e_r = _mm256_fmadd_ps(
        p,
        _mm256_mul_ps(r, r),
        _mm256_add_ps(r, _mm256_set1_ps(1.0)),
    );
    let n_bits = _mm256_sub_epi32(
        _mm256_castps_si256(shifted),
        _mm256_set1_epi32(ROUND_MAGIC.to_bits() as i32),
    );
    let scale = _mm256_slli_epi32::<23>(_mm256_add_epi32(n_bits, _mm256_set1_epi32(127)));
    _mm256_mul_ps(e_r, _mm256_castsi256_ps(scale))
}

const SQRT_2: f32 = std::f32::consts::SQRT_2;

/// `ln x` for normal positive `x`, within ~2 ulp. Zero, negative, subnormal, infinite and NaN inputs give
/// unspecified finite values: callers pass sums of exponentials, which are at least 1.
#[inline(always)]
pub fn ln(x: f32) -> f32 {
    let bits = x.to_bits();
    let exponent = ((bits >> 23) & 0xff) as i32 - 127;
    let mantissa = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    let big = mantissa > SQRT_2;
    let m = if big { mantissa * 0.5 } else { mantissa };
    let e = (if big { exponent + 1 } else { exponent }) as f32;
    let f = m - 1.0;
    let z = f * f;
    let p = 7.037_683_6e-2;
    let p = p * f - 1.151_461_1e-1;
    let p = p * f + 1.167_699_9e-1;
    let p = p * f - 1.242_014_1e-1;
    let p = p * f + 1.424_932_3e-1;
    let p = p * f - 1.666_805_8e-1;
    let p = p * f + 2.000_071_4e-1;
    let p = p * f - 2.499_999_4e-1;
    let p = p * f + 3.333_333e-1;
    let y = p * f * z + LN2_LO * e - 0.5 * z;
    f + y + LN2_HI * e
}

/// [`ln`] on eight lanes at once: the same operations in the same order, so the same values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(crate) fn ln_avx2(x: core::arch::x86_64::__m256) -> core::arch::x86_64::__m256 {
    use core::arch::x86_64::*;
    let bits = _mm256_castps_si256(x);
    let exponent = _mm256_sub_epi32(
        _mm256_and_si256(_mm256_srli_epi32::<23>(bits), _mm256_set1_epi32(0xff)),
        _mm256_set1_epi32(127),
    );
    let mantissa = _mm256_castsi256_ps(_mm256_or_si256(
        _mm256_and_si256(bits, _mm256_set1_epi32(0x007f_ffff)),
        _mm256_set1_epi32(0x3f80_0000),
    ));
    let big = _mm256_cmp_ps::<_CMP_GT_OQ>(mantissa, _mm256_set1_ps(SQRT_2));
    let m = _mm256_blendv_ps(mantissa, _mm256_mul_ps(mantissa, _mm256_set1_ps(0.5)), big);
    // `big` is all ones (-1) where the mantissa was halved: subtracting it adds 1 to the exponent.
    let e = _mm256_cvtepi32_ps(_mm256_sub_epi32(exponent, _mm256_castps_si256(big)));
    let f = _mm256_sub_ps(m, _mm256_set1_ps(1.0));
    let z = _mm256_mul_ps(f, f);
    let step = |p: __m256, c: f32| _mm256_add_ps(_mm256_mul_ps(p, f), _mm256_set1_ps(c));
    let p = _mm256_set1_ps(7.037_683_6e-2);
    let p = step(p, -1.151_461_1e-1);
    let p = step(p, 1.167_699_9e-1);
    let p = step(p, -1.242_014_1e-1);
    let p = step(p, 1.424_932_3e-1);
    let p = step(p, -1.666_805_8e-1);
    let p = step(p, 2.000_071_4e-1);
    let p = step(p, -2.499_999_4e-1);
    let p = step(p, 3.333_333e-1);
    let y = _mm256_sub_ps(
        _mm256_add_ps(
            _mm256_mul_ps(_mm256_mul_ps(p, f), z),
            _mm256_mul_ps(_mm256_set1_ps(LN2_LO), e),
        ),
        _mm256_mul_ps(_mm256_set1_ps(0.5), z),
    );
    _mm256_add_ps(
        _mm256_add_ps(f, y),
        _mm256_mul_ps(_mm256_set1_ps(LN2_HI), e),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn eight_lane_versions_give_the_scalar_values() {
        use core::arch::x86_64::*;
        if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
            return;
        }
        let mut x = 1e-30f32;
        while x < 1e30 {
            let lanes: [f32; 8] = std::array::from_fn(|i| x * (1.0 + i as f32 * 0.37));
            let mut got = [0.0f32; 8];
            let mut got_exp = [0.0f32; 8];
            // SAFETY: the CPU has AVX2 and FMA (checked above); the arrays hold eight values.
            unsafe {
                let v = _mm256_loadu_ps(lanes.as_ptr());
                _mm256_storeu_ps(got.as_mut_ptr(), ln_avx2(v));
                let shifted = _mm256_sub_ps(_mm256_setzero_ps(), _mm256_set1_ps(x.min(100.0)));
                _mm256_storeu_ps(got_exp.as_mut_ptr(), exp_nonpositive_avx2(shifted));
            }
            for (lane, value) in lanes.iter().zip(got) {
                assert_eq!(value, ln(*lane), "ln({lane})");
            }
            assert_eq!(got_exp[0], exp_with::<true>(-x.min(100.0)), "exp(-{x})");
            x *= 1.37;
        }
    }

    #[test]
    fn ln_is_close_to_std() {
        let mut worst = 0.0f64;
        let mut x = 1e-30f32;
        while x < 1e30 {
            let exact = f64::from(x).ln();
            let got = f64::from(ln(x));
            let error = if exact.abs() > 1e-3 {
                ((got - exact) / exact).abs()
            } else {
                (got - exact).abs()
            };
            worst = worst.max(error);
            x *= 1.013;
        }
        assert!(worst < 4.0 * f64::from(f32::EPSILON), "worst error {worst}");
        assert_eq!(ln(1.0), 0.0);
    }

    #[test]
    fn close_to_std_over_the_normal_range() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let exact = f64::from(x).exp();
            let got = f64::from(exp(x));
            worst = worst.max(((got - exact) / exact).abs());
            x += 0.0137;
        }
        assert!(
            worst < 3.0 * f64::from(f32::EPSILON),
            "worst relative error {worst}"
        );
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn the_fused_form_agrees() {
        let mut x = -80.0f32;
        while x < 80.0 {
            let (plain, fused) = (f64::from(exp(x)), f64::from(exp_with::<true>(x)));
            assert!(
                ((plain - fused) / plain).abs() < 3.0 * f64::from(f32::EPSILON),
                "{x}"
            );
            x += 0.173;
        }
    }

    #[test]
    fn extremes_stay_finite_and_tiny_or_huge() {
        assert!(exp(-1000.0) < 1.3e-38 && exp(-1000.0) >= 0.0);
        assert!(exp(1000.0).is_finite() && exp(1000.0) > 1e38);
    }
}
