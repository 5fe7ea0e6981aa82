//! Label blobs (f32, as Caffe stores them) to class indices, checked: one pass that vectorizes on AVX2.

/// Writes `classes[i]` = `labels[i]` as a class index, or -1 where it equals `ignore`; returns how many labels
/// are classes. A label that is neither a whole number in `[0, num_classes)` nor the ignore label stops the
/// pass: `Err(i)` gives the first such position (`classes` is then partly written).
pub fn labels_to_classes(
    labels: &[f32],
    num_classes: usize,
    ignore: Option<i32>,
    classes: &mut [i32],
) -> Result<usize, usize> {
    assert_eq!(labels.len(), classes.len(), "one class per label");
    let num_classes = i32::try_from(num_classes).unwrap_or(i32::MAX);
    #[cfg(target_arch = "x86_64")]
    if super::softmax::has_avx2_fma() {
        // SAFETY: the CPU has AVX2 (checked at run time).
        return unsafe { labels_to_classes_avx2(labels, num_classes, ignore, classes) };
    }
    labels_to_classes_scalar(labels, num_classes, ignore, classes, 0)
}

/// The scalar pass over `labels`, positions counted from `offset` in errors.
fn labels_to_classes_scalar(
    labels: &[f32],
    num_classes: i32,
    ignore: Option<i32>,
    classes: &mut [i32],
    offset: usize,
) -> Result<usize, usize> {
    let mut valid = 0;
    for (i, (&value, class)) in labels.iter().zip(classes.iter_mut()).enumerate() {
        if ignore.is_some_and(|ignore| value == ignore as f32) {
            *class = -1;
            continue;
        }
        // The cast saturates and sends NaN to 0; only a whole number converts back to itself.
        let index = value as i32;
        if index as f32 != value || index < 0 || index >= num_classes {
            return Err(offset + i);
        }
        *class = index;
        valid += 1;
    }
    Ok(valid)
}

/// Eight labels at a time: convert, convert back, compare; the rest (and any bad group, to find its culprit)
/// by the scalar pass, so the results are the scalar pass's.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn labels_to_classes_avx2(
    labels: &[f32],
    num_classes: i32,
    ignore: Option<i32>,
    classes: &mut [i32],
) -> Result<usize, usize> {
    use core::arch::x86_64::*;
    // NaN when there is no ignore label: it equals nothing.
    let ignore_value = _mm256_set1_ps(ignore.map_or(f32::NAN, |i| i as f32));
    let minus_one = _mm256_set1_epi32(-1);
    let limit = _mm256_set1_epi32(num_classes);
    let mut valid = 0usize;
    let whole = labels.len() / 8 * 8;
    for start in (0..whole).step_by(8) {
        // SAFETY: start + 8 <= labels.len() == classes.len().
        unsafe {
            let value = _mm256_loadu_ps(labels.as_ptr().add(start));
            // Out-of-range values and NaN convert to i32::MIN, which does not convert back to them.
            let index = _mm256_cvttps_epi32(value);
            let exact = _mm256_cmp_ps::<_CMP_EQ_OQ>(_mm256_cvtepi32_ps(index), value);
            let in_range = _mm256_and_si256(
                _mm256_cmpgt_epi32(index, minus_one),
                _mm256_cmpgt_epi32(limit, index),
            );
            let ignored = _mm256_cmp_ps::<_CMP_EQ_OQ>(value, ignore_value);
            let is_class =
                _mm256_andnot_ps(ignored, _mm256_and_ps(exact, _mm256_castsi256_ps(in_range)));
            let ok = _mm256_or_ps(is_class, ignored);
            if _mm256_movemask_ps(ok) != 0xff {
                return labels_to_classes_scalar(
                    &labels[start..start + 8],
                    num_classes,
                    ignore,
                    &mut classes[start..start + 8],
                    start,
                )
                .map(|_| unreachable!("a group with a bad label fails the scalar pass too"));
            }
            let class = _mm256_blendv_epi8(index, minus_one, _mm256_castps_si256(ignored));
            _mm256_storeu_si256(classes.as_mut_ptr().add(start).cast(), class);
            valid += _mm256_movemask_ps(is_class).count_ones() as usize;
        }
    }
    let rest = labels_to_classes_scalar(
        &labels[whole..],
        num_classes,
        ignore,
        &mut classes[whole..],
        whole,
    )?;
    Ok(valid + rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_ignores_and_the_first_bad_label() {
        // 19 labels: two groups of eight and a scalar tail.
        let mut labels: Vec<f32> = (0..19).map(|i| (i % 5) as f32).collect();
        labels[3] = 255.0;
        labels[17] = 255.0;
        let mut classes = vec![0; 19];
        let valid = labels_to_classes(&labels, 5, Some(255), &mut classes).unwrap();
        assert_eq!(valid, 17);
        let expected: Vec<i32> = labels
            .iter()
            .map(|&v| if v == 255.0 { -1 } else { v as i32 })
            .collect();
        assert_eq!(classes, expected);
        // Without the ignore label, 255 is out of range; a class index equal to the ignore label is ignored.
        assert_eq!(labels_to_classes(&labels, 5, None, &mut classes), Err(3));
        assert_eq!(
            labels_to_classes(&[0.0, 1.0], 5, Some(1), &mut classes[..2]),
            Ok(1)
        );
        for (bad, at) in [
            (5.0, 9),
            (-1.0, 12),
            (0.5, 10),
            (f32::NAN, 15),
            (f32::INFINITY, 18),
            (-2147483648.0, 8),
            (3e9, 0),
        ] {
            let mut values = vec![1.0; 19];
            values[at] = bad;
            assert_eq!(
                labels_to_classes(&values, 5, Some(255), &mut classes),
                Err(at),
                "{bad} at {at}"
            );
        }
    }

    #[test]
    fn the_vector_and_scalar_passes_agree() {
        let labels: Vec<f32> = (0..1000)
            .map(|i| match i % 7 {
                6 => -1.0,
                k => k as f32,
            })
            .collect();
        let (mut fast, mut slow) = (vec![0; 1000], vec![0; 1000]);
        let a = labels_to_classes(&labels, 6, Some(-1), &mut fast);
        let b = labels_to_classes_scalar(&labels, 6, Some(-1), &mut slow, 0);
        assert_eq!((a, &fast), (b, &slow));
    }
}
