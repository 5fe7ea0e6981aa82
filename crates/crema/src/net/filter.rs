//! Which layers a net has in a given state: Caffe's include/exclude rules on phase, level and stages.
//!
//! A layer with include rules is kept when any rule matches; a layer with exclude rules is dropped when any
//! matches; a layer may not have both. A rule matches when its phase (if any) equals the state's, the state's
//! level is within `[min_level, max_level]`, every `stage` of the rule is among the state's stages and no
//! `not_stage` is.

use crema_proto::{LayerParameter, NetState, NetStateRule};

/// Whether `state` meets `rule`.
pub fn state_meets_rule(state: &NetState, rule: &NetStateRule) -> bool {
    if rule.phase.is_some() && rule.phase() != state.phase() {
        return false;
    }
    if rule.min_level.is_some_and(|min| state.level() < min) {
        return false;
    }
    if rule.max_level.is_some_and(|max| state.level() > max) {
        return false;
    }
    rule.stage.iter().all(|stage| state.stage.contains(stage))
        && !rule
            .not_stage
            .iter()
            .any(|stage| state.stage.contains(stage))
}

/// Whether `layer` is part of the net in `state`; an error message when it has both include and exclude rules.
pub fn layer_included(layer: &LayerParameter, state: &NetState) -> Result<bool, String> {
    match (layer.include.is_empty(), layer.exclude.is_empty()) {
        (false, false) => Err("has both include and exclude rules; give one kind only".into()),
        (false, true) => Ok(layer
            .include
            .iter()
            .any(|rule| state_meets_rule(state, rule))),
        (true, _) => Ok(!layer
            .exclude
            .iter()
            .any(|rule| state_meets_rule(state, rule))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crema_proto::caffe::Phase;

    fn state(phase: Phase, level: i32, stages: &[&str]) -> NetState {
        NetState {
            phase: Some(phase as i32),
            level: Some(level),
            stage: stages.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn layer(text: &str) -> LayerParameter {
        crema_proto::text::parse(text, "t").unwrap()
    }

    #[test]
    fn phase_rules() {
        let train_only = layer("include { phase: TRAIN }");
        assert_eq!(
            layer_included(&train_only, &state(Phase::Train, 0, &[])),
            Ok(true)
        );
        assert_eq!(
            layer_included(&train_only, &state(Phase::Test, 0, &[])),
            Ok(false)
        );
    }

    #[test]
    fn exclude_deploy_stage() {
        let not_deploy = layer("exclude { stage: 'deploy' }");
        assert_eq!(
            layer_included(&not_deploy, &state(Phase::Test, 0, &["deploy"])),
            Ok(false)
        );
        assert_eq!(
            layer_included(&not_deploy, &state(Phase::Test, 0, &[])),
            Ok(true)
        );
        assert_eq!(
            layer_included(&not_deploy, &state(Phase::Train, 0, &["other"])),
            Ok(true)
        );
    }

    #[test]
    fn all_stages_levels_and_not_stages() {
        let rule =
            layer("include { stage: 'a' stage: 'b' min_level: 1 max_level: 2 not_stage: 'c' }");
        assert_eq!(
            layer_included(&rule, &state(Phase::Test, 1, &["a", "b"])),
            Ok(true)
        );
        assert_eq!(
            layer_included(&rule, &state(Phase::Test, 1, &["a"])),
            Ok(false)
        );
        assert_eq!(
            layer_included(&rule, &state(Phase::Test, 3, &["a", "b"])),
            Ok(false)
        );
        assert_eq!(
            layer_included(&rule, &state(Phase::Test, 0, &["a", "b"])),
            Ok(false)
        );
        assert_eq!(
            layer_included(&rule, &state(Phase::Test, 2, &["a", "b", "c"])),
            Ok(false)
        );
        let either = layer("include { phase: TRAIN } include { stage: 'x' }");
        assert_eq!(
            layer_included(&either, &state(Phase::Test, 0, &["x"])),
            Ok(true)
        );
    }

    #[test]
    fn both_kinds_of_rule_are_refused() {
        assert!(layer_included(
            &layer("include { phase: TRAIN } exclude { phase: TEST }"),
            &NetState::default()
        )
        .is_err());
    }
}
