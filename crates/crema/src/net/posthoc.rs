//! Post-hoc logit adjustment (Menon et al., ICLR 2021): a net trained with plain softmax scored as if trained
//! with the logit-adjusted loss, by subtracting `τ · log π` from its scores. It is done on the net's definition:
//! a `LogitAdjust` layer with `tau: −τ` is put in place on the scores before anything reads them, so every
//! metric and prediction downstream sees the corrected scores, and no weight changes.

use crema_proto::caffe::LogitAdjustParameter;
use crema_proto::{LayerParameter, NetParameter};

use crate::error::{Error, Result};

/// Where the class prior comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PriorFrom {
    /// A data source whose labels are counted (a .npy of labels, .h5, an HDF5 list, an LMDB, an image list).
    Source(String),
    /// A file of counts (.npy, .binaryproto or text numbers).
    CountsFile(String),
}

/// Puts a `LogitAdjust` layer (`tau: −tau`, the prior from `prior`) in place on `scores` before the first layer
/// that reads it. When `scores` is a Softmax's output, the layer goes on the Softmax's input instead, since the
/// correction applies to logits (`log p − τ log π` and `p / π^τ` pick the same class). Returns the blob adjusted.
pub fn adjust_logits(
    param: &mut NetParameter,
    scores: &str,
    tau: f32,
    prior: &PriorFrom,
) -> Result<String> {
    let error = |reason: String| Error::Net {
        origin: param.name().to_owned(),
        reason,
    };
    if !tau.is_finite() {
        return Err(error(format!("--logit-adjust {tau}: give a finite number")));
    }
    let produced_by_softmax = param.layer.iter().find(|l| {
        l.top.iter().any(|t| t == scores)
            && !l.bottom.iter().any(|b| b == scores)
            && l.r#type() == "Softmax"
    });
    // The class axis: the Softmax's when one makes the scores, else Caffe's default 1.
    let axis = produced_by_softmax
        .and_then(|softmax| softmax.softmax_param.as_ref())
        .map_or(1, |p| p.axis());
    let target = match produced_by_softmax {
        Some(softmax) => softmax
            .bottom
            .first()
            .cloned()
            .ok_or_else(|| error(format!("the Softmax making \"{scores}\" has no bottom")))?,
        None => scores.to_owned(),
    };
    let name = format!("{target}_posthoc_logit_adjust");
    if param.layer.iter().any(|l| l.name() == name) {
        // Two readers of the same scores (top-1 and top-5 Accuracy): one correction.
        return Ok(target);
    }
    let reads = |l: &LayerParameter| l.bottom.contains(&target) && !l.top.contains(&target);
    let at = param.layer.iter().position(reads).ok_or_else(|| {
        error(format!(
            "no layer reads blob \"{target}\", so there is nothing to adjust"
        ))
    })?;
    let mut adjust = LogitAdjustParameter {
        tau: Some(-tau),
        axis: Some(axis),
        ..Default::default()
    };
    match prior {
        PriorFrom::Source(source) => adjust.source = Some(source.clone()),
        PriorFrom::CountsFile(file) => adjust.counts_file = Some(file.clone()),
    }
    let layer = LayerParameter {
        name: Some(name),
        r#type: Some("LogitAdjust".into()),
        bottom: vec![target.clone()],
        top: vec![target.clone()],
        logit_adjust_param: Some(adjust),
        ..Default::default()
    };
    param.layer.insert(at, layer);
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> NetParameter {
        crema_proto::text::parse(text, "t").unwrap()
    }

    #[test]
    fn goes_before_the_first_reader_and_on_a_softmaxs_input() {
        let mut param = net(
            "layer { name: 'ip' type: 'InnerProduct' bottom: 'x' top: 'score' }
             layer { name: 'relu' type: 'ReLU' bottom: 'score' top: 'score' }
             layer { name: 'loss' type: 'SoftmaxWithLoss' bottom: 'score' bottom: 'y' top: 'loss' }
             layer { name: 'acc' type: 'Accuracy' bottom: 'score' bottom: 'y' top: 'acc' }",
        );
        let blob = adjust_logits(
            &mut param,
            "score",
            1.5,
            &PriorFrom::CountsFile("c.txt".into()),
        )
        .unwrap();
        assert_eq!(blob, "score");
        let names: Vec<&str> = param.layer.iter().map(|l| l.name()).collect();
        assert_eq!(
            names,
            ["ip", "relu", "score_posthoc_logit_adjust", "loss", "acc"]
        );
        let adjust = param.layer[2].logit_adjust_param.as_ref().unwrap();
        assert_eq!((adjust.tau(), adjust.counts_file()), (-1.5, "c.txt"));

        let mut param = net(
            "layer { name: 'ip' type: 'InnerProduct' bottom: 'x' top: 'logits' }
             layer { name: 'prob' type: 'Softmax' bottom: 'logits' top: 'prob' }",
        );
        let blob = adjust_logits(
            &mut param,
            "prob",
            1.0,
            &PriorFrom::Source("train.txt".into()),
        )
        .unwrap();
        assert_eq!(blob, "logits");
        assert_eq!(param.layer[1].r#type(), "LogitAdjust");
        assert_eq!(
            param.layer[1].logit_adjust_param.as_ref().unwrap().source(),
            "train.txt"
        );
        // A second reader of the same scores gets no second correction.
        let before = param.layer.len();
        adjust_logits(
            &mut param,
            "prob",
            1.0,
            &PriorFrom::Source("train.txt".into()),
        )
        .unwrap();
        assert_eq!(param.layer.len(), before);
        let error =
            adjust_logits(&mut param, "nothing", 1.0, &PriorFrom::Source("s".into())).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("no layer reads blob \"nothing\""),
            "{error}"
        );
    }
}
