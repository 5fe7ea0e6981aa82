//! Learning-rate policies: the rate of iteration `iter` from `base_lr`, `lr_policy` and the policy's fields.
//!
//! | policy      | rate                                              | needs                              |
//! |-------------|---------------------------------------------------|------------------------------------|
//! | `fixed`     | `base_lr`                                         |                                    |
//! | `step`      | `base_lr · γ^⌊iter / stepsize⌋`                   | `gamma ≥ 0`, `stepsize > 0`        |
//! | `exp`       | `base_lr · γ^iter`                                | `gamma ≥ 0`                        |
//! | `inv`       | `base_lr · (1 + γ·iter)^(−power)`                 | `gamma ≥ 0`, `power`               |
//! | `multistep` | `base_lr · γ^current_step`                        | `gamma ≥ 0`, one `stepvalue` or more |
//! | `poly`      | `base_lr · (1 − iter / max_iter)^power`           | `max_iter > 0`, `power`            |
//! | `sigmoid`   | `base_lr / (1 + exp(−γ·(iter − stepsize)))`       | `gamma ≥ 0`, `stepsize > 0`        |
//!
//! Precision follows Caffe's expressions: `step`, `exp` and `multistep` raise γ in double precision (C++'s
//! `pow(float, int)`), the others work in single precision.
//!
//! Caffe keeps multistep's `current_step` as solver state, moving it on by at most one per iteration once
//! `iter ≥ stepvalue[current_step]`. Here it is a pure function of `iter` ([`current_step`]) that gives the same
//! count for any list of stepvalues, as long as training ran every iteration from 0 (which a resumed Caffe
//! solver also assumes): the k-th step is taken at iteration `t_k = max(stepvalue[k], t_(k−1) + 1)`.

use crema_proto::SolverParameter;

use super::SolverError;

/// The policy names Caffe knows, in the order its source lists them.
pub const LR_POLICIES: [&str; 7] = [
    "fixed",
    "step",
    "exp",
    "inv",
    "multistep",
    "poly",
    "sigmoid",
];

/// The learning rate of iteration `iter` (the number of updates made before this one).
pub fn learning_rate(param: &SolverParameter, iter: u32) -> Result<f32, SolverError> {
    let base_lr = param
        .base_lr
        .ok_or_else(|| SolverError::field("base_lr", "is not set; every lr_policy scales it"))?;
    if !base_lr.is_finite() {
        return Err(SolverError::field(
            "base_lr",
            format!("is {base_lr}, not a finite number"),
        ));
    }
    let policy = policy_name(param)?;
    let rate = match policy {
        "fixed" => base_lr,
        "step" => {
            let gamma = gamma(param, policy)?;
            let step = iter / stepsize(param, policy)?;
            (f64::from(base_lr) * f64::from(gamma).powf(f64::from(step))) as f32
        }
        "exp" => {
            let gamma = gamma(param, policy)?;
            (f64::from(base_lr) * f64::from(gamma).powf(f64::from(iter))) as f32
        }
        "inv" => {
            let gamma = gamma(param, policy)?;
            let power = power(param, policy)?;
            base_lr * (1.0 + gamma * iter as f32).powf(-power)
        }
        "multistep" => {
            let gamma = gamma(param, policy)?;
            let step = multistep_count(param, iter)?;
            (f64::from(base_lr) * f64::from(gamma).powf(f64::from(step))) as f32
        }
        "poly" => {
            let max_iter = match param.max_iter {
                Some(max_iter) if max_iter > 0 => max_iter,
                Some(max_iter) => {
                    return Err(SolverError::field(
                        "max_iter",
                        format!("is {max_iter}; lr_policy \"poly\" needs max_iter > 0"),
                    ))
                }
                None => {
                    return Err(SolverError::field(
                        "max_iter",
                        "is not set; lr_policy \"poly\" decays the rate to zero at max_iter",
                    ))
                }
            };
            let power = power(param, policy)?;
            base_lr * (1.0 - iter as f32 / max_iter as f32).powf(power)
        }
        "sigmoid" => {
            let gamma = gamma(param, policy)?;
            let stepsize = stepsize(param, policy)?;
            base_lr * (1.0 / (1.0 + (-gamma * (iter as f32 - stepsize as f32)).exp()))
        }
        _ => unreachable!("policy_name accepts only known policies"),
    };
    Ok(rate)
}

/// Caffe's `current_step` at iteration `iter`, as a solverstate records it: `⌊iter / stepsize⌋` for `step`,
/// the number of stepvalues passed for `multistep`, 0 for every other policy.
pub fn current_step(param: &SolverParameter, iter: u32) -> Result<u32, SolverError> {
    match policy_name(param)? {
        "step" => Ok(iter / stepsize(param, "step")?),
        "multistep" => multistep_count(param, iter),
        _ => Ok(0),
    }
}

fn policy_name(param: &SolverParameter) -> Result<&str, SolverError> {
    let Some(policy) = param.lr_policy.as_deref() else {
        return Err(SolverError::field(
            "lr_policy",
            format!("is not set (valid: {})", LR_POLICIES.join(", ")),
        ));
    };
    if LR_POLICIES.contains(&policy) {
        Ok(policy)
    } else {
        Err(SolverError::field(
            "lr_policy",
            format!(
                "\"{policy}\" is not a learning rate policy (valid: {})",
                LR_POLICIES.join(", ")
            ),
        ))
    }
}

fn gamma(param: &SolverParameter, policy: &str) -> Result<f32, SolverError> {
    match param.gamma {
        Some(gamma) if gamma >= 0.0 && gamma.is_finite() => Ok(gamma),
        Some(gamma) => Err(SolverError::field(
            "gamma",
            format!("is {gamma}; lr_policy \"{policy}\" needs a finite gamma ≥ 0"),
        )),
        None => Err(SolverError::field(
            "gamma",
            format!("is not set; lr_policy \"{policy}\" needs it"),
        )),
    }
}

fn power(param: &SolverParameter, policy: &str) -> Result<f32, SolverError> {
    match param.power {
        Some(power) if power.is_finite() => Ok(power),
        Some(power) => Err(SolverError::field(
            "power",
            format!("is {power}; lr_policy \"{policy}\" needs a finite power"),
        )),
        None => Err(SolverError::field(
            "power",
            format!("is not set; lr_policy \"{policy}\" needs it"),
        )),
    }
}

fn stepsize(param: &SolverParameter, policy: &str) -> Result<u32, SolverError> {
    match param.stepsize {
        Some(stepsize) if stepsize > 0 => Ok(stepsize as u32),
        Some(stepsize) => Err(SolverError::field(
            "stepsize",
            format!("is {stepsize}; lr_policy \"{policy}\" needs stepsize > 0"),
        )),
        None => Err(SolverError::field(
            "stepsize",
            format!("is not set; lr_policy \"{policy}\" needs stepsize > 0"),
        )),
    }
}

/// How many of the stepvalues Caffe's multistep has passed by iteration `iter` (at most one per iteration).
fn multistep_count(param: &SolverParameter, iter: u32) -> Result<u32, SolverError> {
    if param.stepvalue.is_empty() {
        return Err(SolverError::field(
            "stepvalue",
            "has no values; lr_policy \"multistep\" needs the iterations at which to step",
        ));
    }
    let iter = i64::from(iter);
    let mut taken_at = -1i64;
    let mut count = 0;
    for &value in &param.stepvalue {
        let at = i64::from(value).max(taken_at + 1);
        if at > iter {
            break;
        }
        taken_at = at;
        count += 1;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solver(text: &str) -> SolverParameter {
        crema_proto::text::parse(text, "solver.prototxt").unwrap()
    }

    fn close(actual: f32, expected: f64) {
        let tolerance = 1e-6 * expected.abs().max(1e-30);
        assert!(
            (f64::from(actual) - expected).abs() <= tolerance,
            "{actual} vs {expected}"
        );
    }

    fn field_of(error: SolverError) -> &'static str {
        match error {
            SolverError::Field { field, .. } => field,
            other => panic!("expected a field error, got {other}"),
        }
    }

    #[test]
    fn fixed_is_base_lr() {
        let p = solver("base_lr: 0.25 lr_policy: \"fixed\"");
        for iter in [0, 1, 1000, u32::MAX] {
            assert_eq!(learning_rate(&p, iter).unwrap(), 0.25);
            assert_eq!(current_step(&p, iter).unwrap(), 0);
        }
    }

    #[test]
    fn step_multiplies_by_gamma_every_stepsize() {
        let p = solver("base_lr: 0.01 lr_policy: \"step\" gamma: 0.1 stepsize: 10");
        close(learning_rate(&p, 0).unwrap(), 0.01);
        close(learning_rate(&p, 9).unwrap(), 0.01);
        close(learning_rate(&p, 10).unwrap(), 0.01 * 0.1);
        close(learning_rate(&p, 19).unwrap(), 0.01 * 0.1);
        close(learning_rate(&p, 25).unwrap(), 0.01 * 0.1 * 0.1);
        assert_eq!(current_step(&p, 25).unwrap(), 2);
    }

    #[test]
    fn exp_raises_gamma_to_iter() {
        let p = solver("base_lr: 0.5 lr_policy: \"exp\" gamma: 0.9");
        close(learning_rate(&p, 0).unwrap(), 0.5);
        close(learning_rate(&p, 3).unwrap(), 0.5 * 0.9 * 0.9 * 0.9);
    }

    #[test]
    fn inv_decays_polynomially_in_iter() {
        let p = solver("base_lr: 0.8 lr_policy: \"inv\" gamma: 0.5 power: 2");
        close(learning_rate(&p, 0).unwrap(), 0.8);
        // (1 + 0.5·2)^−2 = 1/4; (1 + 0.5·6)^−2 = 1/16
        close(learning_rate(&p, 2).unwrap(), 0.8 / 4.0);
        close(learning_rate(&p, 6).unwrap(), 0.8 / 16.0);
        // LeNet's schedule: 0.01 · (1 + 1e-4 · 100)^−0.75
        let lenet = solver("base_lr: 0.01 lr_policy: \"inv\" gamma: 0.0001 power: 0.75");
        let expected = 0.01 * (1.0 / 1.01f64.powf(0.75));
        assert!((f64::from(learning_rate(&lenet, 100).unwrap()) - expected).abs() < 1e-8);
    }

    #[test]
    fn multistep_steps_at_each_stepvalue() {
        let p = solver(
            "base_lr: 1 lr_policy: \"multistep\" gamma: 0.5 stepvalue: 5 stepvalue: 8 stepvalue: 20",
        );
        let expected = [
            (0, 1.0),
            (4, 1.0),
            (5, 0.5),
            (7, 0.5),
            (8, 0.25),
            (19, 0.25),
            (20, 0.125),
            (999, 0.125),
        ];
        for (iter, rate) in expected {
            close(learning_rate(&p, iter).unwrap(), rate);
        }
        assert_eq!(current_step(&p, 7).unwrap(), 1);
        assert_eq!(current_step(&p, 25).unwrap(), 3);
    }

    /// Caffe's stateful rule, run iteration by iteration from 0, as a reference.
    fn caffe_multistep_steps(stepvalues: &[i32], last: u32) -> Vec<u32> {
        let mut current = 0usize;
        let mut out = Vec::new();
        for iter in 0..=last {
            if current < stepvalues.len() && iter as i64 >= stepvalues[current] as i64 {
                current += 1;
            }
            out.push(current as u32);
        }
        out
    }

    #[test]
    fn multistep_matches_caffes_one_step_per_iteration_rule() {
        let cases: [&[i32]; 5] = [&[5, 8], &[5, 5, 5], &[10, 3], &[0, 1, 2], &[-4, 7, 6]];
        for stepvalues in cases {
            let mut p = solver("base_lr: 1 lr_policy: \"multistep\" gamma: 0.5");
            p.stepvalue = stepvalues.to_vec();
            let reference = caffe_multistep_steps(stepvalues, 30);
            for (iter, &steps) in reference.iter().enumerate() {
                assert_eq!(
                    current_step(&p, iter as u32).unwrap(),
                    steps,
                    "stepvalues {stepvalues:?} at iter {iter}"
                );
            }
        }
        // Repeated stepvalues: one step at iteration 5, the next at 6.
        let mut p = solver("base_lr: 1 lr_policy: \"multistep\" gamma: 0.5");
        p.stepvalue = vec![5, 5];
        close(learning_rate(&p, 5).unwrap(), 0.5);
        close(learning_rate(&p, 6).unwrap(), 0.25);
    }

    #[test]
    fn poly_reaches_zero_at_max_iter() {
        let p = solver("base_lr: 2 lr_policy: \"poly\" power: 2 max_iter: 10");
        close(learning_rate(&p, 0).unwrap(), 2.0);
        // (1 − 5/10)^2 = 1/4
        close(learning_rate(&p, 5).unwrap(), 2.0 * 0.25);
        assert_eq!(learning_rate(&p, 10).unwrap(), 0.0);
        let linear = solver("base_lr: 1 lr_policy: \"poly\" power: 1 max_iter: 4");
        close(learning_rate(&linear, 1).unwrap(), 0.75);
    }

    #[test]
    fn sigmoid_is_half_at_stepsize() {
        let p = solver("base_lr: 0.1 lr_policy: \"sigmoid\" gamma: 1 stepsize: 10");
        close(learning_rate(&p, 10).unwrap(), 0.05);
        let e2 = 7.389_056_098_930_65_f64; // e²
        close(learning_rate(&p, 12).unwrap(), 0.1 / (1.0 + 1.0 / e2));
        close(learning_rate(&p, 8).unwrap(), 0.1 / (1.0 + e2));
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            ("base_lr: 1 lr_policy: \"cosine\"", "lr_policy"),
            ("base_lr: 1", "lr_policy"),
            ("lr_policy: \"fixed\"", "base_lr"),
            ("base_lr: 1 lr_policy: \"step\" gamma: 0.1", "stepsize"),
            (
                "base_lr: 1 lr_policy: \"step\" gamma: 0.1 stepsize: 0",
                "stepsize",
            ),
            ("base_lr: 1 lr_policy: \"step\" stepsize: 10", "gamma"),
            ("base_lr: 1 lr_policy: \"exp\" gamma: -0.5", "gamma"),
            ("base_lr: 1 lr_policy: \"inv\" gamma: 0.1", "power"),
            (
                "base_lr: 1 lr_policy: \"multistep\" gamma: 0.1",
                "stepvalue",
            ),
            ("base_lr: 1 lr_policy: \"poly\" power: 1", "max_iter"),
            (
                "base_lr: 1 lr_policy: \"poly\" power: 1 max_iter: -3",
                "max_iter",
            ),
            ("base_lr: 1 lr_policy: \"sigmoid\" gamma: 0.1", "stepsize"),
        ];
        for (text, field) in cases {
            let error = learning_rate(&solver(text), 3).unwrap_err();
            let message = error.to_string();
            assert!(message.contains(field), "{text}: {message}");
            assert_eq!(field_of(error), field, "{text}");
        }
        let message = learning_rate(&solver("base_lr: 1 lr_policy: \"cosine\""), 0)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("cosine") && message.contains("multistep"),
            "{message}"
        );
    }
}
