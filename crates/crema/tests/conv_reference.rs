//! Single layers against real Caffe: the cases in tests/fixtures/caffe-reference/conv (see its README.md), each
//! a folder with a net (Input layers feeding one layer, `force_backward: true`, no loss), its inputs, the
//! layer's blobs, and what Caffe computed: the tops after forward, and the bottom (and parameter) gradients after
//! a backward from a given top gradient.
//!
//! To add a case: copy its folder, and add a test calling [`check_case`] with the phase `cases.json` gives it
//! (TEST unless said).

use std::path::{Path, PathBuf};

use crema::proto::caffe::Phase;
use crema::proto::{files, NetParameter, NetState};
use crema::{Net, NetOptions};

/// The folder of case `name`.
fn case_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/caffe-reference/conv")
        .join(name)
}

/// A .npy file's shape and values as f32.
fn npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let array = crema::io::read_npy(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (array.shape().to_vec(), array.to_f32_vec())
}

/// The files of a case folder whose names are `{prefix}{key}.npy`, as (key, path), sorted by key.
fn files_with_prefix(dir: &Path, prefix: &str) -> Vec<(String, PathBuf)> {
    let mut found: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter_map(|path| {
            let name = path.file_name()?.to_str()?;
            let key = name.strip_prefix(prefix)?.strip_suffix(".npy")?.to_owned();
            Some((key, path))
        })
        .collect();
    found.sort();
    found
}

/// Splits a `param_<layer>_<i>` key (the layer name may hold underscores) into the layer and the blob index.
fn layer_and_index(key: &str) -> (&str, usize) {
    let (layer, index) = key
        .rsplit_once('_')
        .unwrap_or_else(|| panic!("{key}: not <layer>_<index>"));
    (
        layer,
        index
            .parse()
            .unwrap_or_else(|_| panic!("{key}: bad blob index")),
    )
}

/// `actual` equals `expected` within `tolerance`, relative to max(1, |expected|); `what` names the values.
fn assert_close(what: &str, actual: &[f32], expected: &[f32], tolerance: f64) {
    assert_eq!(
        actual.len(),
        expected.len(),
        "{what}: {} values, Caffe has {}",
        actual.len(),
        expected.len()
    );
    let mut worst = (0.0f64, 0usize);
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        let error = (f64::from(a) - f64::from(e)).abs() / f64::from(e.abs()).max(1.0);
        if error.is_nan() || error > worst.0 {
            worst = (error, i);
        }
    }
    let (error, i) = worst;
    assert!(
        error <= tolerance,
        "{what}: [{i}] is {} but Caffe has {} (relative error {error:e} > {tolerance:e})",
        actual[i],
        expected[i]
    );
}

/// The net of a case, from its net.prototxt (upgraded as on load) definition changed by `edit`, built in `phase`.
fn case_net_edited(name: &str, phase: Phase, edit: impl FnOnce(&mut NetParameter)) -> Net {
    let path = case_dir(name).join("net.prototxt");
    let (mut param, _) = files::read_net_text(&path).unwrap_or_else(|e| panic!("{e}"));
    edit(&mut param);
    let state = NetState {
        phase: Some(phase as i32),
        ..Default::default()
    };
    let options = NetOptions {
        origin: path.display().to_string(),
        ..Default::default()
    };
    Net::new(&param, &state, &options).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Fills the net's inputs from the case's `in_<blob>.npy` and its layers' blobs from `param_<layer>_<i>.npy`;
/// shapes must match exactly.
fn set_inputs_and_params(name: &str, net: &mut Net) {
    let dir = case_dir(name);
    for (blob, path) in files_with_prefix(&dir, "in_") {
        let (shape, values) = npy(&path);
        let target = net
            .blob_mut(&blob)
            .unwrap_or_else(|| panic!("{name}: the net has no input blob \"{blob}\""));
        assert_eq!(target.shape(), &shape[..], "{name}: input {blob}");
        target.data_mut().copy_from_slice(&values);
    }
    for (key, path) in files_with_prefix(&dir, "param_") {
        let (layer, index) = layer_and_index(&key);
        let (shape, values) = npy(&path);
        let layer_index = net
            .layer_index(layer)
            .unwrap_or_else(|| panic!("{name}: the net has no layer \"{layer}\""));
        let blob = &mut net.layer_params_mut(layer_index)[index];
        assert_eq!(blob.shape(), &shape[..], "{name}: {layer} blobs[{index}]");
        blob.data_mut().copy_from_slice(&values);
    }
}

/// The net of case `name` in `phase`, with its inputs and layer blobs set.
fn load_case(name: &str, phase: Phase) -> Net {
    let mut net = case_net_edited(name, phase, |_| {});
    set_inputs_and_params(name, &mut net);
    net
}

/// Forward: every `out_<top>.npy`; then backward from the top gradients `topdiff_<top>.npy`
/// ([`Net::backward_from`], as pycaffe's `net.backward(**{top: G})`): every
/// `grad_<blob>.npy` (a bottom's diff) and `paramgrad_<layer>_<i>.npy` (a blob's diff, from 0).
fn check_forward_and_backward(name: &str, net: &mut Net, tolerance: f64) {
    let dir = case_dir(name);
    net.forward().unwrap_or_else(|e| panic!("{name}: {e}"));
    let outputs = files_with_prefix(&dir, "out_");
    assert!(!outputs.is_empty(), "{name}: no out_*.npy");
    for (top, path) in outputs {
        let (shape, expected) = npy(&path);
        let blob = net
            .blob(&top)
            .unwrap_or_else(|| panic!("{name}: no top \"{top}\""));
        assert_eq!(blob.shape(), &shape[..], "{name}: the shape of {top}");
        assert_close(&format!("{name}: {top}"), blob.data(), &expected, tolerance);
    }

    net.clear_param_diffs();
    let top_diffs: Vec<(String, Vec<f32>)> = files_with_prefix(&dir, "topdiff_")
        .into_iter()
        .map(|(top, path)| (top, npy(&path).1))
        .collect();
    let top_diffs: Vec<(&str, &[f32])> = top_diffs
        .iter()
        .map(|(top, diff)| (top.as_str(), diff.as_slice()))
        .collect();
    net.backward_from(&top_diffs)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    for (blob, path) in files_with_prefix(&dir, "grad_") {
        let (_, expected) = npy(&path);
        let diff = net
            .blob_diff(&blob)
            .unwrap_or_else(|| panic!("{name}: no blob \"{blob}\""));
        assert_close(&format!("{name}: d{blob}"), diff, &expected, tolerance);
    }
    for (key, path) in files_with_prefix(&dir, "paramgrad_") {
        let (layer, index) = layer_and_index(&key);
        let (_, expected) = npy(&path);
        let layer_index = net.layer_index(layer).unwrap();
        let diff = net.layer_params(layer_index)[index].diff();
        assert_close(
            &format!("{name}: d {layer} blobs[{index}]"),
            diff,
            &expected,
            tolerance,
        );
    }
}

/// Runs case `name` in `phase` and compares everything Caffe computed, within `tolerance` (relative to
/// max(1, |value|)).
fn check_case(name: &str, phase: Phase, tolerance: f64) {
    let mut net = load_case(name, phase);
    check_forward_and_backward(name, &mut net, tolerance);
}

#[test]
fn lrn_across_5_matches_caffe() {
    check_case("lrn_across_5", Phase::Test, 1e-5);
}

#[test]
fn batchnorm_global_matches_caffe() {
    check_case("batchnorm_global", Phase::Test, 1e-5);

    // The same blobs from the caffemodel pycaffe saved.
    let name = "batchnorm_global";
    let mut net = load_case(name, Phase::Test);
    let bn = net.layer_index("bn").unwrap();
    for blob in net.layer_params_mut(bn) {
        blob.data_mut().fill(0.0);
    }
    let path = case_dir(name).join("params.caffemodel");
    let (trained, _) = files::read_net_binary(&path).unwrap();
    let copied = net
        .copy_trained_from(&trained, &path.display().to_string())
        .unwrap();
    assert_eq!(copied, ["bn"]);
    for (i, blob) in net.layer_params(bn).iter().enumerate() {
        let (_, expected) = npy(&case_dir(name).join(format!("param_bn_{i}.npy")));
        assert_eq!(blob.data(), &expected[..], "blobs[{i}]");
    }
    check_forward_and_backward(name, &mut net, 1e-5);
    // The statistics are used, never changed, in TEST.
    for (i, blob) in net.layer_params(bn).iter().enumerate() {
        let (_, expected) = npy(&case_dir(name).join(format!("param_bn_{i}.npy")));
        assert_eq!(blob.data(), &expected[..], "blobs[{i}] after forward");
    }
}

/// The batchnorm_global case's net in TRAIN without `use_global_stats`: after one forward the output is
/// normalized by the batch's statistics and the blobs moved by Caffe's formula, from the case's blobs:
/// `sf = f·sf + 1`, `mean_blob = mean + f·mean_blob`, `var_blob = m/(m−1)·var + f·var_blob` (`m = N·H·W`).
#[test]
fn batchnorm_train_moves_the_blobs_as_caffe() {
    let name = "batchnorm_global";
    let mut net = case_net_edited(name, Phase::Train, |param| {
        for layer in &mut param.layer {
            if let Some(bn) = layer.batch_norm_param.as_mut() {
                bn.use_global_stats = None;
                bn.moving_average_fraction = Some(0.75);
            }
        }
    });
    set_inputs_and_params(name, &mut net);
    let bn = net.layer_index("bn").unwrap();
    let old: Vec<Vec<f64>> = net
        .layer_params(bn)
        .iter()
        .map(|b| b.data().iter().map(|&v| f64::from(v)).collect())
        .collect();
    let (shape, x) = npy(&case_dir(name).join("in_x.npy"));
    let (n, c, spatial) = (shape[0], shape[1], shape[2] * shape[3]);
    let m = (n * spatial) as f64;
    let channel = |ch: usize| -> Vec<f64> {
        (0..n)
            .flat_map(|i| (0..spatial).map(move |s| (i * c + ch) * spatial + s))
            .map(|k| f64::from(x[k]))
            .collect()
    };
    net.forward().unwrap();

    let f = 0.75;
    let mut expected = [vec![0.0; c], vec![0.0; c], vec![f * old[2][0] + 1.0]];
    let mut y = vec![0.0f32; x.len()];
    for ch in 0..c {
        let values = channel(ch);
        let mean = values.iter().sum::<f64>() / m;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / m;
        expected[0][ch] = mean + f * old[0][ch];
        expected[1][ch] = m / (m - 1.0) * var + f * old[1][ch];
        for i in 0..n {
            for s in 0..spatial {
                let k = (i * c + ch) * spatial + s;
                y[k] = ((f64::from(x[k]) - mean) / (var + 1e-5).sqrt()) as f32;
            }
        }
    }
    for (i, expected) in expected.iter().enumerate() {
        let expected: Vec<f32> = expected.iter().map(|&v| v as f32).collect();
        assert_close(
            &format!("blobs[{i}]"),
            net.layer_params(bn)[i].data(),
            &expected,
            1e-6,
        );
    }
    assert_close("y", net.blob("y").unwrap().data(), &y, 1e-5);
}
