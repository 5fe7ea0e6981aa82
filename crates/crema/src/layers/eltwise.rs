//! Eltwise: element-wise combination of two or more bottoms of the same shape.
//!
//! - `PROD`: `y = Π xᵢ`; gradient `dxᵢ = dy · Π_{j≠i} xⱼ` (`stable_prod_grad: true`, the default), or
//!   `dy · y / xᵢ` (`stable_prod_grad: false`, faster but undefined where `xᵢ = 0`).
//! - `SUM` (the default): `y = Σ cᵢ xᵢ` with `coeff` (one per bottom, default all 1); gradient `dxᵢ = cᵢ · dy`.
//! - `MAX`: `y = maxᵢ xᵢ`; the gradient goes to the bottom that held the maximum. On ties between bottoms 0
//!   and 1 bottom 1 wins; a later bottom wins only when strictly greater (Caffe's rule).
//!
//! Parameters: `eltwise_param { operation coeff stable_prod_grad }`; `coeff` only with SUM.

use crema_proto::caffe::eltwise_parameter::EltwiseOp;

use crate::blob::Blob;
use crate::layer::{Arity, Layer, LayerContext, LayerError, LayerResult};

/// The Eltwise layer.
pub struct Eltwise {
    op: EltwiseOp,
    /// As given; empty means all 1.
    coeff: Vec<f32>,
    stable_prod_grad: bool,
    /// MAX: which bottom gave each top value.
    argmax: Vec<u32>,
}

/// Makes an Eltwise layer from its parameters.
pub fn create(ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    let p = ctx.param.eltwise_param.clone().unwrap_or_default();
    let op = EltwiseOp::try_from(p.operation.unwrap_or(EltwiseOp::Sum as i32)).map_err(|_| {
        LayerError::new(format!(
            "eltwise_param.operation: unknown value {:?}",
            p.operation
        ))
    })?;
    if op != EltwiseOp::Sum && !p.coeff.is_empty() {
        return Err(LayerError::new(format!(
            "eltwise_param.coeff: coefficients are for SUM only, not {}",
            op.as_str_name()
        )));
    }
    Ok(Box::new(Eltwise {
        op,
        stable_prod_grad: p.stable_prod_grad(),
        coeff: p.coeff,
        argmax: Vec::new(),
    }))
}

impl Eltwise {
    fn coeff(&self, i: usize) -> f32 {
        self.coeff.get(i).copied().unwrap_or(1.0)
    }
}

impl Layer for Eltwise {
    fn type_name(&self) -> &'static str {
        "Eltwise"
    }

    fn bottom_arity(&self) -> Arity {
        Arity::at_least(2)
    }

    fn top_arity(&self) -> Arity {
        Arity::exactly(1)
    }

    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        if !self.coeff.is_empty() && self.coeff.len() != bottom.len() {
            return Err(LayerError::new(format!(
                "eltwise_param.coeff: give one coefficient per bottom ({}) or none; got {}",
                bottom.len(),
                self.coeff.len()
            )));
        }
        for (i, b) in bottom.iter().enumerate().skip(1) {
            if b.shape() != bottom[0].shape() {
                return Err(LayerError::new(format!(
                    "Eltwise: bottom {i} has shape {}, bottom 0 has {}; they must be equal",
                    b.shape_string(),
                    bottom[0].shape_string()
                )));
            }
        }
        top[0].reshape_like(bottom[0])?;
        if self.op == EltwiseOp::Max {
            crate::memory::resize(&mut self.argmax, bottom[0].count(), 0, || {
                "the max positions".into()
            })?;
        }
        Ok(())
    }

    fn forward(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let y = top[0].data_mut();
        match self.op {
            EltwiseOp::Prod => {
                y.copy_from_slice(bottom[0].data());
                for b in &bottom[1..] {
                    for (y, &x) in y.iter_mut().zip(b.data()) {
                        *y *= x;
                    }
                }
            }
            EltwiseOp::Sum => {
                y.fill(0.0);
                for (i, b) in bottom.iter().enumerate() {
                    let c = self.coeff(i);
                    for (y, &x) in y.iter_mut().zip(b.data()) {
                        *y += c * x;
                    }
                }
            }
            EltwiseOp::Max => {
                let mask = &mut self.argmax;
                for (((y, m), &a), &b) in y
                    .iter_mut()
                    .zip(mask.iter_mut())
                    .zip(bottom[0].data())
                    .zip(bottom[1].data())
                {
                    (*y, *m) = if a > b { (a, 0) } else { (b, 1) };
                }
                for (i, b) in bottom.iter().enumerate().skip(2) {
                    for ((y, m), &x) in y.iter_mut().zip(mask.iter_mut()).zip(b.data()) {
                        if x > *y {
                            (*y, *m) = (x, i as u32);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn backward(
        &mut self,
        top: &[&Blob],
        propagate_down: &[bool],
        bottom: &mut [&mut Blob],
    ) -> LayerResult {
        let dy = top[0].diff();
        for (i, _) in propagate_down.iter().enumerate().filter(|(_, &down)| down) {
            let (before, rest) = bottom.split_at_mut(i);
            let (current, after) = rest.split_first_mut().expect("i < len");
            let (x, dx) = current.data_and_diff_mut();
            match self.op {
                EltwiseOp::Prod if self.stable_prod_grad => {
                    let mut others = before.iter().chain(after.iter());
                    dx.copy_from_slice(others.next().expect("two or more bottoms").data());
                    for other in others {
                        for (d, &v) in dx.iter_mut().zip(other.data()) {
                            *d *= v;
                        }
                    }
                    for (d, &g) in dx.iter_mut().zip(dy) {
                        *d *= g;
                    }
                }
                EltwiseOp::Prod => {
                    for (((d, &g), &y), &x) in dx.iter_mut().zip(dy).zip(top[0].data()).zip(x) {
                        *d = y / x * g;
                    }
                }
                EltwiseOp::Sum => {
                    let c = self.coeff(i);
                    for (d, &g) in dx.iter_mut().zip(dy) {
                        *d = c * g;
                    }
                }
                EltwiseOp::Max => {
                    for ((d, &g), &m) in dx.iter_mut().zip(dy).zip(&self.argmax) {
                        *d = if m as usize == i { g } else { 0.0 };
                    }
                }
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

    fn layer(text: &str) -> LayerResult<Box<dyn Layer>> {
        let param = crema_proto::text::parse(text, "t").unwrap();
        create(&mut context(&param))
    }

    fn forward(text: &str, bottoms: &[Blob]) -> LayerResult<Blob> {
        let mut l = layer(text)?;
        let refs: Vec<&Blob> = bottoms.iter().collect();
        let mut top = Blob::default();
        l.setup(&refs, &mut [&mut top])?;
        l.reshape(&refs, &mut [&mut top])?;
        l.forward(&refs, &mut [&mut top])?;
        Ok(top)
    }

    fn bottoms() -> Vec<Blob> {
        vec![
            Blob::from_data(&[4], vec![1.0, -2.0, 3.0, 0.5]).unwrap(),
            Blob::from_data(&[4], vec![2.0, 2.0, -1.0, 0.5]).unwrap(),
            Blob::from_data(&[4], vec![0.5, 3.0, 3.0, -4.0]).unwrap(),
        ]
    }

    #[test]
    fn forward_by_hand() {
        let b = bottoms();
        assert_eq!(
            forward("name: \"e\"", &b).unwrap().data(),
            [3.5, 3.0, 5.0, -3.0]
        );
        let text = "eltwise_param { operation: SUM coeff: 1 coeff: -1 coeff: 2 }";
        assert_eq!(forward(text, &b).unwrap().data(), [0.0, 2.0, 10.0, -8.0]);
        let text = "eltwise_param { operation: PROD }";
        assert_eq!(forward(text, &b).unwrap().data(), [1.0, -12.0, -9.0, -1.0]);
        let text = "eltwise_param { operation: MAX }";
        assert_eq!(forward(text, &b).unwrap().data(), [2.0, 3.0, 3.0, 0.5]);
    }

    #[test]
    fn max_ties_and_routing() {
        let mut l = layer("eltwise_param { operation: MAX }").unwrap();
        let mut b = bottoms();
        let mut top = Blob::default();
        {
            let refs: Vec<&Blob> = b.iter().collect();
            l.reshape(&refs, &mut [&mut top]).unwrap();
            l.forward(&refs, &mut [&mut top]).unwrap();
        }
        top.diff_mut().copy_from_slice(&[1.0, 2.0, 3.0, 4.0]);
        let mut refs: Vec<&mut Blob> = b.iter_mut().collect();
        l.backward(&[&top], &[true, true, true], &mut refs).unwrap();
        // Element 2: bottoms 0 and 2 both hold 3; bottom 2 is not strictly greater, so bottom 0 keeps it.
        // Element 3: bottoms 0 and 1 tie at 0.5; bottom 1 wins.
        assert_eq!(b[0].diff(), [0.0, 0.0, 3.0, 0.0]);
        assert_eq!(b[1].diff(), [1.0, 0.0, 0.0, 4.0]);
        assert_eq!(b[2].diff(), [0.0, 2.0, 0.0, 0.0]);
    }

    #[test]
    fn errors_name_the_field() {
        let b = bottoms();
        let err = layer("eltwise_param { operation: PROD coeff: 1 coeff: 1 coeff: 1 }")
            .err()
            .unwrap();
        assert!(err.0.starts_with("eltwise_param.coeff: "), "{err}");
        let err = forward("eltwise_param { coeff: 1 coeff: 2 }", &b).unwrap_err();
        assert!(err.0.starts_with("eltwise_param.coeff: "), "{err}");
        let err = forward("name: \"e\"", &[b[0].clone(), Blob::new(&[2, 2]).unwrap()]).unwrap_err();
        assert!(err.0.starts_with("Eltwise: bottom 1"), "{err}");
    }

    /// Inputs for MAX whose values differ across bottoms by far more than the finite-difference step.
    fn separated(shape: &[usize], bottoms: usize) -> Vec<Blob> {
        let base = uniform_blob(shape, 0.0, 1.0, 11);
        (0..bottoms)
            .map(|k| {
                let mut b = base.clone();
                for (i, v) in b.data_mut().iter_mut().enumerate() {
                    // A different bottom is the largest at different positions; gaps of at least 0.5.
                    *v = ((i + k) % bottoms) as f32 + 0.5 * *v;
                }
                b
            })
            .collect()
    }

    #[test]
    fn gradient() {
        let settings = [
            ("eltwise_param { operation: SUM }", 3),
            ("eltwise_param { operation: SUM coeff: 0.5 coeff: -2 }", 2),
            ("eltwise_param { operation: PROD }", 3),
            (
                "eltwise_param { operation: PROD stable_prod_grad: false }",
                2,
            ),
            ("eltwise_param { operation: MAX }", 3),
            ("eltwise_param { operation: MAX }", 2),
        ];
        for (text, n) in settings {
            for shape in [&[5][..], &[2, 3, 2]] {
                let mut bottoms: Vec<Blob> = if text.contains("MAX") {
                    separated(shape, n)
                } else {
                    (0..n)
                        .map(|k| uniform_blob(shape, 0.2, 1.5, k as u64))
                        .collect()
                };
                let all: Vec<usize> = (0..n).collect();
                let mut l = layer(text).unwrap();
                GradientChecker::default()
                    .check(l.as_mut(), &mut bottoms, 1, &all)
                    .unwrap_or_else(|e| panic!("{text} {shape:?}: {e}"));
            }
        }
    }
}
