//! The binary files that real Caffe and pycaffe wrote (tests/fixtures/caffe-reference/formats) read back with
//! the right shapes and values, and crema writes the same bytes.

use std::path::PathBuf;

use crema::io::{self, ArrayData};
use crema::proto::{blob, files, NetParameter};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/caffe-reference/formats")
        .join(name)
}

/// H = arange(16).reshape(4, 4) / 8 + eye(4), as the fixtures were made.
fn expected_h() -> Vec<f32> {
    (0..16)
        .map(|i| i as f32 / 8.0 + if i % 5 == 0 { 1.0 } else { 0.0 })
        .collect()
}

#[test]
fn binaryproto_in_both_forms_reads_back() {
    for (name, shape) in [
        ("H_shape_1x1x4x4.binaryproto", vec![1, 1, 4, 4]),
        ("H_shape_4x4.binaryproto", vec![4, 4]),
        ("H_legacy_nchw_1x1x4x4.binaryproto", vec![1, 1, 4, 4]),
    ] {
        let array = io::read_blobproto(&fixture(name)).unwrap();
        assert_eq!(array.shape(), &shape[..], "{name}");
        assert_eq!(array.data(), &ArrayData::F32(expected_h()), "{name}");
    }
}

#[test]
fn npy_matches_binaryproto() {
    let npy = io::read_npy(&fixture("H_4x4.npy")).unwrap();
    assert_eq!(npy.shape(), &[4, 4]);
    assert_eq!(npy.data(), &ArrayData::F32(expected_h()));
}

#[test]
fn writing_gives_pycaffe_bytes() {
    for (name, shape) in [
        ("H_shape_1x1x4x4.binaryproto", vec![1, 1, 4, 4]),
        ("H_shape_4x4.binaryproto", vec![4, 4]),
    ] {
        let mut array = io::read_npy(&fixture("H_4x4.npy")).unwrap();
        array.reshape(&shape, "H").unwrap();
        let bytes = crema::proto::binary::encode(&io::array_to_blobproto(&array));
        assert_eq!(bytes, std::fs::read(fixture(name)).unwrap(), "{name}");
    }
}

#[test]
fn caffemodel_reads_with_its_weights() {
    let (net, report) = files::read_net_binary(&fixture("tiny_ip.caffemodel")).unwrap();
    assert!(!report.upgraded());
    assert_eq!(net.name(), "tiny_ip");
    let ip = net.layer.iter().find(|l| l.name() == "ip").unwrap();
    assert_eq!(ip.r#type(), "InnerProduct");
    assert_eq!(ip.inner_product_param.as_ref().unwrap().num_output(), 4);
    let weights = io::array_from_blobproto(&ip.blobs[0], "W").unwrap();
    let bias = io::array_from_blobproto(&ip.blobs[1], "b").unwrap();
    assert_eq!(weights, io::read_npy(&fixture("tiny_ip_W.npy")).unwrap());
    assert_eq!(bias, io::read_npy(&fixture("tiny_ip_b.npy")).unwrap());
    // The text dump Caffe made of the same model parses to the same message.
    let dumped: NetParameter =
        files::read_text(&fixture("tiny_ip.caffemodel.as_text.prototxt")).unwrap();
    assert_eq!(dumped, net);
}

#[test]
fn caffemodel_writes_back_byte_identical() {
    let original = std::fs::read(fixture("tiny_ip.caffemodel")).unwrap();
    let net: NetParameter = crema::proto::binary::decode(&original, "tiny_ip").unwrap();
    assert_eq!(crema::proto::binary::encode(&net), original);
    let (shape, _) = blob::checked(&net.layer[1].blobs[0], "W").unwrap();
    assert_eq!(shape, vec![4, 3]);
}

#[test]
fn tiny_ip_runs_forward_with_caffes_weights_and_saves_the_bytes_caffe_saved() {
    use crema::proto::caffe::Phase;
    use crema::proto::NetState;
    use crema::{Net, NetOptions};

    let (param, _) = files::read_net_text(&fixture("tiny_ip.prototxt")).unwrap();
    let state = NetState {
        phase: Some(Phase::Test as i32),
        ..Default::default()
    };
    let mut net = Net::new(&param, &state, &NetOptions::default()).unwrap();
    let (trained, _) = files::read_net_binary(&fixture("tiny_ip.caffemodel")).unwrap();
    assert_eq!(
        net.copy_trained_from(&trained, "tiny_ip.caffemodel")
            .unwrap(),
        ["ip"]
    );
    let x = io::read_npy(&fixture("tiny_ip_x.npy")).unwrap();
    net.blob_mut("data")
        .unwrap()
        .data_mut()
        .copy_from_slice(&x.to_f32_vec());
    net.forward().unwrap();
    let y = io::read_npy(&fixture("tiny_ip_y.npy"))
        .unwrap()
        .to_f32_vec();
    for (got, want) in net.blob("ip").unwrap().data().iter().zip(&y) {
        assert!((got - want).abs() <= 1e-6, "{got} vs {want}");
    }
    // What crema would save is what Caffe's Net.save wrote, byte for byte.
    let saved = crema::proto::binary::encode(&net.to_proto(false));
    assert_eq!(saved, std::fs::read(fixture("tiny_ip.caffemodel")).unwrap());
}

#[test]
fn weights_of_the_wrong_shape_are_refused_with_both_shapes() {
    use crema::proto::NetState;
    use crema::{Net, NetOptions};

    let text = std::fs::read_to_string(fixture("tiny_ip.prototxt"))
        .unwrap()
        .replace("num_output: 4", "num_output: 5");
    let param: NetParameter = crema::proto::text::parse(&text, "tiny5.prototxt").unwrap();
    let mut net = Net::new(&param, &NetState::default(), &NetOptions::default()).unwrap();
    let (trained, _) = files::read_net_binary(&fixture("tiny_ip.caffemodel")).unwrap();
    let err = net
        .copy_trained_from(&trained, "tiny_ip.caffemodel")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("layer \"ip\"")
            && err.contains("4 3 (12) in the weights file, 5 3 (15) in the net"),
        "{err}"
    );
}
