//! Silence: consumes its bottoms and makes no tops, so that unused blobs are not printed as net outputs.
//!
//! No parameters. Forward does nothing; backward sets the bottoms' diffs to zero (no gradient flows through).

use crate::blob::Blob;
use crate::layer::{Arity, Layer, LayerContext, LayerResult};

/// The Silence layer.
pub struct Silence;

/// Makes a Silence layer.
pub fn create(_ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    Ok(Box::new(Silence))
}

impl Layer for Silence {
    fn type_name(&self) -> &'static str {
        "Silence"
    }

    fn bottom_arity(&self) -> Arity {
        Arity::at_least(1)
    }

    fn top_arity(&self) -> Arity {
        Arity::exactly(0)
    }

    fn reshape(&mut self, _bottom: &[&Blob], _top: &mut [&mut Blob]) -> LayerResult {
        Ok(())
    }

    fn forward(&mut self, _bottom: &[&Blob], _top: &mut [&mut Blob]) -> LayerResult {
        Ok(())
    }

    fn backward(
        &mut self,
        _top: &[&Blob],
        propagate_down: &[bool],
        bottom: &mut [&mut Blob],
    ) -> LayerResult {
        for (b, &down) in bottom.iter_mut().zip(propagate_down) {
            if down {
                b.zero_diff();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::test_support::context;
    use crate::testing::{uniform_blob, GradientChecker};

    #[test]
    fn backward_zeroes_only_what_is_asked() {
        let param = crema_proto::text::parse("name: \"s\"", "t").unwrap();
        let mut l = create(&mut context(&param)).unwrap();
        let mut a = Blob::new(&[2]).unwrap();
        let mut b = Blob::new(&[3]).unwrap();
        a.diff_mut().fill(5.0);
        b.diff_mut().fill(5.0);
        l.reshape(&[&a, &b], &mut []).unwrap();
        l.forward(&[&a, &b], &mut []).unwrap();
        l.backward(&[], &[true, false], &mut [&mut a, &mut b])
            .unwrap();
        assert_eq!(a.diff(), [0.0, 0.0]);
        assert_eq!(b.diff(), [5.0, 5.0, 5.0]);
    }

    #[test]
    fn gradient_is_zero() {
        for shapes in [[&[3][..], &[2, 2]], [&[2, 3, 4][..], &[1]]] {
            let param = crema_proto::text::parse("name: \"s\"", "t").unwrap();
            let mut l = create(&mut context(&param)).unwrap();
            let mut bottoms = [
                uniform_blob(shapes[0], -1.0, 1.0, 1),
                uniform_blob(shapes[1], -1.0, 1.0, 2),
            ];
            GradientChecker::default()
                .check(l.as_mut(), &mut bottoms, 0, &[0, 1])
                .unwrap();
        }
    }
}
