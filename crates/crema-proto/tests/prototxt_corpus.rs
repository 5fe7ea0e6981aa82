//! The prototxt fixture corpus in `tests/fixtures/prototxt/` (see its README.md): every good file parses as a
//! net or a solver (by file name), round-trips through text and binary, and upgrades; the V0/V1/input fixtures
//! upgrade to the expected layers; every bad file fails at the line and column it names; and the corpus as a
//! whole covers the schema (every `*_param` message of LayerParameter, every field of the core messages).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::path::{Path, PathBuf};

use crema_proto::caffe::{
    convolution_parameter, eltwise_parameter, filler_parameter, hinge_loss_parameter,
    loss_parameter, lrn_parameter, param_spec, pooling_parameter, solver_parameter, Phase,
};
use crema_proto::{
    binary, files, text, upgrade, CaffeMessage, LayerParameter, NetParameter, NetStateRule,
    ProtoError, SolverParameter, V1LayerParameter,
};
use prost_reflect::{DynamicMessage, Kind, ReflectMessage, Value};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/prototxt");

fn fixture(name: &str) -> PathBuf {
    Path::new(FIXTURES).join(name)
}

/// The `.prototxt` files directly in `folder`, sorted by name.
fn prototxt_files(folder: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(folder)
        .unwrap_or_else(|e| panic!("{}: {e}", folder.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "prototxt"))
        .collect();
    found.sort();
    found
}

fn good_fixtures() -> Vec<PathBuf> {
    prototxt_files(Path::new(FIXTURES))
}

fn bad_fixtures() -> Vec<PathBuf> {
    prototxt_files(&Path::new(FIXTURES).join("bad"))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .expect("a file")
        .to_string_lossy()
        .into_owned()
}

/// Files whose name contains "solver" hold a SolverParameter; all others a NetParameter.
fn is_solver(path: &Path) -> bool {
    file_name(path).contains("solver")
}

fn read_net(name: &str) -> NetParameter {
    files::read_text(&fixture(name)).unwrap_or_else(|e| panic!("{e}"))
}

fn read_solver(name: &str) -> SolverParameter {
    files::read_text(&fixture(name)).unwrap_or_else(|e| panic!("{e}"))
}

fn upgraded_net(name: &str) -> (NetParameter, upgrade::UpgradeReport) {
    files::read_net_text(&fixture(name)).unwrap_or_else(|e| panic!("{e}"))
}

/// parse(print(x)) == x, print(parse(print(x))) == print(x), and decode(encode(x)) == x.
fn assert_round_trips<M: CaffeMessage + PartialEq + Debug>(message: &M, what: &str) {
    let printed = text::print(message);
    let reparsed: M = text::parse(&printed, &format!("{what} (printed)"))
        .unwrap_or_else(|e| panic!("{what}: the printed text does not parse back: {e}\n{printed}"));
    assert!(
        reparsed == *message,
        "{what}: parse(print(x)) differs from x\n{printed}"
    );
    assert_eq!(
        text::print(&reparsed),
        printed,
        "{what}: printing is not stable"
    );
    let decoded: M =
        binary::decode(&binary::encode(message), what).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        decoded == *message,
        "{what}: decode(encode(x)) differs from x"
    );
}

/// Checks that an upgraded net holds no deprecated form any more, that upgrading it again changes nothing, and
/// that it round-trips too. (`net_needs_upgrade` can stay true: like Caffe's, the BatchNorm step looks at the
/// number of params, which the upgrade keeps, so it is redone, to the same result, on every load.)
fn assert_fully_upgraded(net: &NetParameter, what: &str) {
    let mut again = net.clone();
    upgrade::upgrade_net(&mut again, what)
        .unwrap_or_else(|e| panic!("{what}: upgrading twice: {e}"));
    assert!(again == *net, "{what}: a second upgrade changed the net");
    assert!(
        net.layers.is_empty(),
        "{what}: V1 layers left after the upgrade"
    );
    assert!(
        net.input.is_empty() && net.input_dim.is_empty() && net.input_shape.is_empty(),
        "{what}: net-level input fields left after the upgrade"
    );
    assert_round_trips(net, &format!("{what} (upgraded)"));
}

fn layer<'a>(net: &'a NetParameter, name: &str) -> &'a LayerParameter {
    net.layer
        .iter()
        .find(|layer| layer.name() == name)
        .unwrap_or_else(|| panic!("no layer named {name:?}"))
}

fn types(net: &NetParameter) -> Vec<&str> {
    net.layer.iter().map(|layer| layer.r#type()).collect()
}

fn multipliers(layer: &LayerParameter) -> Vec<(f32, f32)> {
    layer
        .param
        .iter()
        .map(|p| (p.lr_mult(), p.decay_mult()))
        .collect()
}

fn dims(shapes: &[crema_proto::BlobShape]) -> Vec<Vec<i64>> {
    shapes.iter().map(|shape| shape.dim.clone()).collect()
}

// ---------------------------------------------------------------------------------------------------------------
// The corpus as a whole
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn readme_lists_exactly_the_fixtures_on_disk() {
    let readme =
        std::fs::read_to_string(fixture("README.md")).expect("tests/fixtures/prototxt/README.md");
    let mut listed = BTreeSet::new();
    for word in
        readme.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '/' || c == '.'))
    {
        if let Some(name) = word.strip_suffix(".prototxt") {
            if !name.is_empty() && !name.contains('*') {
                listed.insert(format!("{name}.prototxt"));
            }
        }
    }
    let on_disk: BTreeSet<String> = good_fixtures()
        .iter()
        .map(|path| file_name(path))
        .chain(
            bad_fixtures()
                .iter()
                .map(|path| format!("bad/{}", file_name(path))),
        )
        .collect();
    let missing: Vec<_> = on_disk.difference(&listed).collect();
    let stale: Vec<_> = listed.difference(&on_disk).collect();
    assert!(
        missing.is_empty(),
        "fixtures not described in README.md: {missing:?}"
    );
    assert!(
        stale.is_empty(),
        "README.md names fixtures that do not exist: {stale:?}"
    );
    assert!(
        on_disk.len() >= 30,
        "the corpus shrank to {} files",
        on_disk.len()
    );
}

#[test]
fn every_good_fixture_parses_and_round_trips() {
    let paths = good_fixtures();
    assert!(
        paths.iter().filter(|p| is_solver(p)).count() >= 10,
        "too few solver fixtures"
    );
    assert!(
        paths.iter().filter(|p| !is_solver(p)).count() >= 12,
        "too few net fixtures"
    );
    for path in &paths {
        let what = file_name(path);
        let bytes = std::fs::read(path).unwrap();
        let source = std::str::from_utf8(&bytes).unwrap_or_else(|e| panic!("{what}: {e}"));
        if is_solver(path) {
            let solver: SolverParameter = files::read_text(path).unwrap_or_else(|e| panic!("{e}"));
            let from_str: SolverParameter = text::parse(source, &what).unwrap();
            assert_eq!(
                solver, from_str,
                "{what}: files::read_text and text::parse disagree"
            );
            assert_round_trips(&solver, &what);
            let (upgraded, _) = files::read_solver_text(path).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                upgraded.solver_type.is_none(),
                "{what}: solver_type left after the upgrade"
            );
            assert_round_trips(&upgraded, &format!("{what} (upgraded)"));
            // Nets written inline in the solver upgrade like nets in files.
            let inline = upgraded
                .net_param
                .iter()
                .chain(upgraded.train_net_param.iter())
                .chain(upgraded.test_net_param.iter());
            for (index, net) in inline.enumerate() {
                let inline_what = format!("{what} inline net #{index}");
                assert_round_trips(net, &inline_what);
                let mut net = net.clone();
                upgrade::upgrade_net(&mut net, &inline_what).unwrap_or_else(|e| panic!("{e}"));
                assert_fully_upgraded(&net, &inline_what);
            }
        } else {
            let net: NetParameter = files::read_text(path).unwrap_or_else(|e| panic!("{e}"));
            let from_str: NetParameter = text::parse(source, &what).unwrap();
            assert_eq!(
                net, from_str,
                "{what}: files::read_text and text::parse disagree"
            );
            assert!(
                !net.layer.is_empty() || !net.layers.is_empty(),
                "{what}: no layers"
            );
            assert_round_trips(&net, &what);
            let (upgraded, report) = files::read_net_text(path).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                report.upgraded(),
                upgrade::net_needs_upgrade(&net),
                "{what}: {report:?}"
            );
            assert_fully_upgraded(&upgraded, &what);
        }
    }
}

#[test]
fn every_bad_fixture_fails_where_its_header_says() {
    let paths = bad_fixtures();
    assert!(paths.len() >= 5, "too few bad fixtures");
    for path in &paths {
        let what = file_name(path);
        let bytes = std::fs::read(path).unwrap();
        // Headers are ASCII comment lines: `# expect-error: LINE:COLUMN`, `# expect-message: TEXT`, and
        // optionally `# expect-context: TEXT` (the enclosing blocks shown under the caret).
        let header = String::from_utf8_lossy(&bytes);
        let expect = |key: &str| {
            header
                .lines()
                .find_map(|line| line.strip_prefix(&format!("# expect-{key}: ")))
                .map(str::to_owned)
        };
        let position =
            expect("error").unwrap_or_else(|| panic!("{what}: no '# expect-error: L:C' header"));
        let (line, column) = position.split_once(':').expect("LINE:COLUMN");
        let (line, column): (usize, usize) = (line.parse().unwrap(), column.parse().unwrap());
        let message_part =
            expect("message").unwrap_or_else(|| panic!("{what}: no '# expect-message:' header"));

        let error = if is_solver(path) {
            files::read_text::<SolverParameter>(path).err()
        } else {
            files::read_text::<NetParameter>(path).err()
        };
        let error = error.unwrap_or_else(|| panic!("{what}: parsed, but should have failed"));
        let shown = error.to_string();
        match &error {
            ProtoError::TextParse {
                origin,
                line: got_line,
                column: got_column,
                message,
                context,
            } => {
                assert_eq!(
                    (*got_line, *got_column),
                    (line, column),
                    "{what}: wrong position\n{shown}"
                );
                assert!(origin.ends_with(&what), "{what}: origin {origin:?}");
                assert!(
                    message.contains(&message_part),
                    "{what}: message lacks {message_part:?}\n{shown}"
                );
                assert!(
                    context.contains('^'),
                    "{what}: no caret in the context\n{shown}"
                );
                if let Some(blocks) = expect("context") {
                    assert!(
                        context.contains(&blocks),
                        "{what}: context lacks {blocks:?}\n{shown}"
                    );
                }
                assert!(
                    shown.contains(&format!("{what}:{line}:{column}: ")),
                    "{what}: the message does not lead with file:line:column\n{shown}"
                );
            }
            other => panic!("{what}: expected ProtoError::TextParse, got {other:?}"),
        }

        // Text given in memory fails at the same place (files that are UTF-8 at all).
        if let Ok(source) = std::str::from_utf8(&bytes) {
            let error = if is_solver(path) {
                text::parse::<SolverParameter>(source, "<memory>").err()
            } else {
                text::parse::<NetParameter>(source, "<memory>").err()
            };
            match error {
                Some(ProtoError::TextParse {
                    line: got_line,
                    column: got_column,
                    ..
                }) => assert_eq!((got_line, got_column), (line, column), "{what} (in memory)"),
                other => panic!("{what} (in memory): expected a TextParse error, got {other:?}"),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Schema coverage
// ---------------------------------------------------------------------------------------------------------------

/// Every (message, field) that is set somewhere in `message` or the messages nested in it.
fn collect_set_fields(message: &DynamicMessage, seen: &mut BTreeMap<String, BTreeSet<String>>) {
    let descriptor = message.descriptor();
    for (field, value) in message.fields() {
        seen.entry(descriptor.full_name().to_owned())
            .or_default()
            .insert(field.name().to_owned());
        let nested: Vec<&DynamicMessage> = match value {
            Value::Message(inner) => vec![inner],
            Value::List(values) => values.iter().filter_map(Value::as_message).collect(),
            _ => Vec::new(),
        };
        for inner in nested {
            collect_set_fields(inner, seen);
        }
    }
}

/// The fields of LayerParameter that hold a layer type's parameter message (`*_param`).
fn param_message_fields() -> Vec<prost_reflect::FieldDescriptor> {
    LayerParameter::descriptor()
        .fields()
        .filter(|field| {
            field.name().ends_with("_param") && matches!(field.kind(), Kind::Message(_))
        })
        .collect()
}

#[test]
fn all_param_messages_fixture_sets_every_param_message_of_layer_parameter() {
    let net = read_net("all_param_messages.prototxt");
    let fields = param_message_fields();
    // transform_param ... clip_param in today's caffe.proto; fewer means the filter above broke.
    assert!(
        fields.len() >= 49,
        "only {} *_param fields found in LayerParameter",
        fields.len()
    );
    let layers: Vec<DynamicMessage> = net.layer.iter().map(CaffeMessage::to_dynamic).collect();
    let mut missing = Vec::new();
    for field in &fields {
        let covered = layers.iter().any(|layer| {
            layer.has_field(field)
                && layer
                    .get_field(field)
                    .as_message()
                    .is_some_and(|inner| inner.fields().next().is_some())
        });
        if !covered {
            missing.push(field.name().to_owned());
        }
    }
    assert!(
        missing.is_empty(),
        "all_param_messages.prototxt sets no field of these LayerParameter fields; add a layer for each: {missing:?}"
    );
    // And the file stays a well-formed net: each bottom is made by an earlier layer.
    let mut blobs = BTreeSet::new();
    for layer in &net.layer {
        for bottom in &layer.bottom {
            assert!(
                blobs.contains(bottom),
                "layer {:?}: bottom {bottom:?} is not produced earlier",
                layer.name()
            );
        }
        blobs.extend(layer.top.iter().cloned());
    }
}

#[test]
fn corpus_sets_every_field_of_the_core_messages() {
    let mut seen = BTreeMap::new();
    for path in good_fixtures() {
        let dynamic = if is_solver(&path) {
            files::read_text::<SolverParameter>(&path)
                .unwrap()
                .to_dynamic()
        } else {
            files::read_text::<NetParameter>(&path)
                .unwrap()
                .to_dynamic()
        };
        collect_set_fields(&dynamic, &mut seen);
    }
    let pool = crema_proto::descriptor_pool();
    let full = [
        "caffe.NetParameter",
        "caffe.LayerParameter",
        "caffe.ParamSpec",
        "caffe.NetState",
        "caffe.NetStateRule",
        "caffe.FillerParameter",
        "caffe.BlobShape",
        "caffe.TransformationParameter",
        "caffe.LossParameter",
        "caffe.SolverParameter",
    ];
    let mut missing = Vec::new();
    for name in full {
        let descriptor = pool.get_message_by_name(name).unwrap();
        let set = seen.get(name).cloned().unwrap_or_default();
        for field in descriptor.fields() {
            if !set.contains(field.name()) {
                missing.push(format!("{name}.{}", field.name()));
            }
        }
    }
    // V1 layers: every field except the per-type parameter messages (which the upgrade moves by reflection).
    let v1 = V1LayerParameter::descriptor();
    let v1_set = seen.get(v1.full_name()).cloned().unwrap_or_default();
    for field in v1.fields().filter(|f| !f.name().ends_with("_param")) {
        if !v1_set.contains(field.name()) {
            missing.push(format!("{}.{}", v1.full_name(), field.name()));
        }
    }
    // V0 layers: every field except new_num and new_channels, which no V0 layer type used (the upgrade drops them).
    let v0 = pool.get_message_by_name("caffe.V0LayerParameter").unwrap();
    let v0_set = seen.get(v0.full_name()).cloned().unwrap_or_default();
    for field in v0
        .fields()
        .filter(|f| !["new_num", "new_channels"].contains(&f.name()))
    {
        if !v0_set.contains(field.name()) {
            missing.push(format!("{}.{}", v0.full_name(), field.name()));
        }
    }
    assert!(
        missing.is_empty(),
        "no good fixture sets these fields: {missing:?}"
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Specific fixtures
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn v1_infogain_upgrades_to_current_layers() {
    let (net, report) = upgraded_net("v1_infogain.prototxt");
    assert!(report.steps.iter().any(|s| s.contains("V1")), "{report:?}");
    assert!(
        report.steps.iter().any(|s| s.contains("transform_param")),
        "{report:?}"
    );
    assert!(report.warnings.is_empty(), "{report:?}");
    assert_eq!(net.name(), "OldStyleInfogain");
    assert_eq!(
        types(&net),
        [
            "Data",
            "Data",
            "Convolution",
            "ReLU",
            "InnerProduct",
            "Softmax",
            "InfogainLoss",
            "Accuracy",
            "Power"
        ]
    );

    let loss = layer(&net, "infogain");
    assert_eq!(loss.r#type(), "InfogainLoss");
    assert_eq!(
        loss.infogain_loss_param.as_ref().unwrap().source(),
        "H.binaryproto"
    );
    assert_eq!(multipliers(loss), [(3.0, 0.5)]);
    assert_eq!(loss.loss_weight, [1.5]);
    assert_eq!(
        (&loss.bottom[..], &loss.top[..]),
        (
            &["fc_prob".to_owned(), "label".to_owned()][..],
            &["infogain".to_owned()][..]
        )
    );

    // The deprecated data_param fields moved to transform_param; the rest of data_param stayed.
    let train_data = &net.layer[0];
    assert_eq!(train_data.include[0].phase(), Phase::Train);
    let transform = train_data.transform_param.as_ref().unwrap();
    assert_eq!(
        (
            transform.scale(),
            transform.mean_file(),
            transform.crop_size(),
            transform.mirror()
        ),
        (0.0125, "data/old_style_mean.binaryproto", 20, true)
    );
    let data = train_data.data_param.as_ref().unwrap();
    assert!(
        data.scale.is_none()
            && data.mean_file.is_none()
            && data.crop_size.is_none()
            && data.mirror.is_none()
    );
    assert_eq!(
        (data.source(), data.batch_size()),
        ("data/old_style_train_leveldb", 16)
    );
    assert_eq!(net.layer[1].include[0].phase(), Phase::Test);
    assert_eq!(
        net.layer[1].transform_param.as_ref().unwrap().crop_size(),
        20
    );

    let conv = layer(&net, "conv");
    assert_eq!(multipliers(conv), [(1.0, 1.0), (2.0, 0.0)]);
    assert_eq!(
        conv.convolution_param
            .as_ref()
            .unwrap()
            .weight_filler
            .as_ref()
            .unwrap()
            .std(),
        0.01
    );

    let fc = layer(&net, "fc");
    let names: Vec<_> = fc.param.iter().map(|p| p.name()).collect();
    assert_eq!(names, ["fc_weights", "fc_bias"]);
    let modes: Vec<_> = fc.param.iter().map(|p| p.share_mode()).collect();
    assert_eq!(
        modes,
        [
            param_spec::DimCheckMode::Permissive,
            param_spec::DimCheckMode::Strict
        ]
    );
    assert_eq!(multipliers(fc), [(1.0, 1.0), (2.0, 0.0)]);

    let accuracy = layer(&net, "top2");
    assert_eq!(accuracy.exclude[0].phase(), Phase::Train);
    assert_eq!(accuracy.accuracy_param.as_ref().unwrap().top_k(), 2);

    let power = layer(&net, "offset");
    assert_eq!(power.power_param.as_ref().unwrap().shift(), 0.25);
    let blob = &power.blobs[0];
    assert_eq!(
        (blob.num(), blob.channels(), blob.height(), blob.width()),
        (1, 1, 1, 2)
    );
    assert_eq!(blob.data, [0.5, -1.5]);
}

#[test]
fn v0_net_upgrades_through_v1_to_current_layers() {
    let (net, report) = upgraded_net("v0_net.prototxt");
    assert!(report.steps.iter().any(|s| s.contains("V0")), "{report:?}");
    assert!(report.warnings.is_empty(), "{report:?}");
    assert_eq!(
        types(&net),
        [
            "Data",
            "Convolution",
            "ReLU",
            "Pooling",
            "LRN",
            "InnerProduct",
            "Dropout",
            "SoftmaxWithLoss"
        ]
    );
    let names: Vec<_> = net.layer.iter().map(|l| l.name()).collect();
    assert!(
        !names.contains(&"pad1"),
        "the padding layer was not folded: {names:?}"
    );

    let data = layer(&net, "source");
    assert_eq!(data.top, ["data", "label"]);
    let data_param = data.data_param.as_ref().unwrap();
    assert_eq!(
        (data_param.source(), data_param.batch_size()),
        ("data/ancient_leveldb", 10)
    );
    let transform = data.transform_param.as_ref().unwrap();
    assert_eq!(
        (
            transform.scale(),
            transform.mean_file(),
            transform.crop_size(),
            transform.mirror()
        ),
        (0.5, "data/ancient_mean.binaryproto", 24, true)
    );

    let conv = layer(&net, "conv1");
    assert_eq!(
        conv.bottom,
        ["data"],
        "the convolution reads what the padding layer read"
    );
    let conv_param = conv.convolution_param.as_ref().unwrap();
    assert_eq!(
        (
            conv_param.num_output(),
            &conv_param.kernel_size[..],
            &conv_param.stride[..],
            &conv_param.pad[..]
        ),
        (8, &[3][..], &[1][..], &[1][..])
    );
    assert_eq!(conv_param.group(), 1);
    assert_eq!(
        conv_param.weight_filler.as_ref().unwrap().r#type(),
        "gaussian"
    );
    assert_eq!(multipliers(conv), [(1.0, 1.0), (2.0, 0.0)]);

    let pool = layer(&net, "pool1").pooling_param.as_ref().unwrap();
    assert_eq!(
        (pool.pool(), pool.kernel_size(), pool.stride()),
        (pooling_parameter::PoolMethod::Max, 2, 2)
    );
    let lrn = layer(&net, "norm1").lrn_param.as_ref().unwrap();
    assert_eq!(
        (lrn.local_size(), lrn.alpha(), lrn.beta()),
        (3, 0.0002, 0.6)
    );
    let fc = layer(&net, "fc1").inner_product_param.as_ref().unwrap();
    assert_eq!((fc.num_output(), fc.bias_term()), (5, false));
    assert_eq!(
        layer(&net, "drop1")
            .dropout_param
            .as_ref()
            .unwrap()
            .dropout_ratio(),
        0.3
    );
    assert_eq!(layer(&net, "loss").bottom, ["fc1", "label"]);
}

#[test]
fn v0_detection_types_upgrade_with_their_fields() {
    let (net, report) = upgraded_net("v0_more_types.prototxt");
    assert!(report.warnings.is_empty(), "{report:?}");
    assert_eq!(
        types(&net),
        [
            "ImageData",
            "WindowData",
            "HDF5Data",
            "Concat",
            "Convolution",
            "LRN",
            "Pooling",
            "HDF5Output"
        ]
    );
    let images = layer(&net, "listed");
    let image_param = images.image_data_param.as_ref().unwrap();
    assert_eq!(
        (
            image_param.source(),
            image_param.batch_size(),
            image_param.new_height(),
            image_param.new_width()
        ),
        ("lists/ancient_images.txt", 4, 36, 36)
    );
    assert!(image_param.shuffle());
    assert_eq!(image_param.rand_skip(), 3);
    assert_eq!(images.transform_param.as_ref().unwrap().crop_size(), 32);

    let windows = layer(&net, "windows").window_data_param.as_ref().unwrap();
    assert_eq!(
        (
            windows.fg_threshold(),
            windows.bg_threshold(),
            windows.fg_fraction(),
            windows.context_pad()
        ),
        (0.6, 0.4, 0.3, 8)
    );
    assert_eq!((windows.crop_mode(), windows.batch_size()), ("square", 4));
    assert_eq!(
        layer(&net, "extra")
            .hdf5_data_param
            .as_ref()
            .unwrap()
            .batch_size(),
        4
    );
    assert_eq!(
        layer(&net, "both")
            .concat_param
            .as_ref()
            .unwrap()
            .concat_dim(),
        0
    );

    let conv = layer(&net, "conv");
    assert_eq!(conv.blobs.len(), 2);
    assert_eq!(
        (
            conv.blobs[0].num(),
            conv.blobs[0].channels(),
            conv.blobs[0].data.len()
        ),
        (2, 3, 6)
    );
    assert_eq!(conv.blobs[1].data, [0.0, 0.5]);
    assert_eq!(layer(&net, "norm").lrn_param.as_ref().unwrap().k(), 2.0);
    let pool = layer(&net, "avg").pooling_param.as_ref().unwrap();
    assert_eq!(
        (pool.pool(), pool.pad()),
        (pooling_parameter::PoolMethod::Ave, 1)
    );
    let save = layer(&net, "save");
    assert_eq!(
        save.hdf5_output_param.as_ref().unwrap().file_name(),
        "ancient_features.h5"
    );
    assert_eq!(save.bottom, ["avg", "extra"]);
}

#[test]
fn input_dim_becomes_an_input_layer_first() {
    let (net, report) = upgraded_net("deploy_input_dim.prototxt");
    assert!(report.upgraded());
    assert_eq!(types(&net), ["Input", "Eltwise", "Convolution", "Softmax"]);
    let input = &net.layer[0];
    assert_eq!(input.top, ["frame", "mask"]);
    assert_eq!(
        dims(&input.input_param.as_ref().unwrap().shape),
        [vec![1, 3, 24, 32], vec![1, 1, 24, 32]]
    );
    let eltwise = layer(&net, "masked").eltwise_param.as_ref().unwrap();
    assert_eq!(eltwise.operation(), eltwise_parameter::EltwiseOp::Prod);
}

#[test]
fn input_shape_becomes_an_input_layer_first() {
    let (net, report) = upgraded_net("input_shape.prototxt");
    assert!(report.upgraded());
    assert_eq!(types(&net), ["Input", "Embed", "Flatten"]);
    let input = &net.layer[0];
    assert_eq!(input.top, ["tokens", "features"]);
    assert_eq!(
        dims(&input.input_param.as_ref().unwrap().shape),
        [vec![20, 4], vec![4, 16, 1]]
    );
    assert!(net.force_backward());
}

#[test]
fn batch_norm_layers_with_three_params_are_frozen_by_the_upgrade() {
    let raw = read_net("batchnorm_legacy_params.prototxt");
    assert_eq!(multipliers(layer(&raw, "bn_tail")), [(0.5, 1.0); 3]);
    let (net, report) = upgraded_net("batchnorm_legacy_params.prototxt");
    assert!(
        report.steps.iter().any(|s| s.contains("BatchNorm")),
        "{report:?}"
    );
    assert_eq!(multipliers(layer(&net, "bn")), [(0.0, 0.0); 3]);
    assert_eq!(multipliers(layer(&net, "bn_tail")), [(0.0, 0.0); 3]);
    assert!(layer(&net, "bn_tail")
        .batch_norm_param
        .as_ref()
        .unwrap()
        .use_global_stats());
    assert_eq!(
        multipliers(layer(&net, "conv")),
        [(1.0, 1.0)],
        "other layers' params are untouched"
    );
    assert_eq!(layer(&net, "l2").loss_weight, [0.0]);
}

#[test]
fn stages_fixture_keeps_rules_and_state() {
    let (net, report) = upgraded_net("stages.prototxt");
    assert!(!report.upgraded(), "{report:?}");
    let state = net.state.as_ref().unwrap();
    assert_eq!(
        (state.phase(), state.level(), &state.stage[..]),
        (
            Phase::Train,
            2,
            &["finetune".to_owned(), "augment".to_owned()][..]
        )
    );
    assert!(net.debug_info() && !net.force_backward());

    let eval = layer(&net, "eval_source");
    assert_eq!(eval.include[0].phase(), Phase::Test);
    assert_eq!(eval.include[0].stage, ["eval-on-holdout"]);
    assert!(eval.transform_param.as_ref().unwrap().force_gray());

    let noise = &layer(&net, "augment_noise").include[0];
    assert_eq!(
        (&noise.stage[..], &noise.not_stage[..], noise.min_level),
        (
            &["augment".to_owned()][..],
            &["deploy".to_owned()][..],
            Some(1)
        )
    );
    assert!(noise.phase.is_none(), "an unset phase matches both phases");

    let loss = layer(&net, "head_loss");
    assert_eq!(loss.exclude.len(), 2);
    assert_eq!(
        loss.exclude[0],
        NetStateRule {
            stage: vec!["deploy".into()],
            ..Default::default()
        }
    );
    assert_eq!(
        (loss.exclude[1].phase(), loss.exclude[1].max_level),
        (Phase::Test, Some(0))
    );
    let loss_param = loss.loss_param.as_ref().unwrap();
    assert_eq!(
        (loss_param.ignore_label(), loss_param.normalize()),
        (-1, false)
    );
    assert!(loss_param.normalization.is_none());
    assert_eq!(
        loss_param.normalization(),
        loss_parameter::NormalizationMode::Valid
    );

    let source = layer(&net, "train_source")
        .transform_param
        .as_ref()
        .unwrap();
    assert_eq!(source.mean_value, [96.0, 110.5, 121.0]);
    assert_eq!(layer(&net, "debug_silence").phase(), Phase::Test);
}

#[test]
fn text_syntax_fixture_reads_every_form() {
    let net = read_net("text_syntax.prototxt");
    assert_eq!(net.name(), "SyntaxTour");
    assert!(net.force_backward() && !net.debug_info());
    assert_eq!(
        dims(&net.layer[0].input_param.as_ref().unwrap().shape),
        [vec![2, 3, 8, 4]]
    );

    let conv = layer(&net, "conv");
    assert_eq!(multipliers(conv), [(1.0, 1.0), (2.0, 0.0), (1.0, 1.0)]);
    let conv_param = conv.convolution_param.as_ref().unwrap();
    assert_eq!(conv_param.num_output(), 16);
    assert_eq!(
        (&conv_param.kernel_size[..], &conv_param.pad[..]),
        (&[3, 1][..], &[1, 0][..])
    );
    assert!(conv_param.bias_term());
    assert_eq!(conv_param.engine(), convolution_parameter::Engine::Cudnn);
    let weight_filler = conv_param.weight_filler.as_ref().unwrap();
    assert_eq!(weight_filler.std(), 0.05);
    assert!(weight_filler.mean() == 0.0 && weight_filler.mean().is_sign_negative());
    assert_eq!(conv_param.bias_filler.as_ref().unwrap().value(), -0.015);

    let scale = layer(&net, "scale");
    assert_eq!(scale.blobs[0].data, [1.0, 0.5, -0.25]);
    assert_eq!(scale.blobs[1].data, [0.0, 0.001, 1.5]);
    assert_eq!(dims(&[scale.blobs[1].shape.clone().unwrap()]), [vec![3]]);
    let scale_param = scale.scale_param.as_ref().unwrap();
    assert_eq!((scale_param.bias_term(), scale_param.axis()), (true, -3));

    let clip = layer(&net, "bounded").clip_param.as_ref().unwrap();
    assert_eq!((clip.min, clip.max), (f32::NEG_INFINITY, f32::INFINITY));

    let sampler = layer(&net, "sampler");
    let pool = sampler.pooling_param.as_ref().unwrap();
    assert_eq!(pool.pool(), pooling_parameter::PoolMethod::Ave);
    assert!(pool.global_pooling());
    assert_eq!(pool.round_mode(), pooling_parameter::RoundMode::Floor);
    assert_eq!(
        sampler.dropout_param,
        Some(Default::default()),
        "an empty block is still present"
    );

    let python = &net.layer[5];
    assert_eq!(python.name(), "strings \"escaped\"\tand\\or\n");
    assert_eq!(python.top, ["caf\u{e9} \u{2615} \u{e9} \u{2615}"]);
    assert_eq!(layer(&net, "tail").bottom, python.top);
    let python_param = python.python_param.as_ref().unwrap();
    assert_eq!(python_param.module(), "crema_concatenated_strings");
    assert_eq!(python_param.layer(), "IdentityAB");
    assert_eq!(python_param.param_str(), "{\"it's\": 'fine'}");
    assert_eq!(python_param.share_in_parallel, Some(false));
}

#[test]
fn crlf_and_tabs_read_like_any_whitespace() {
    let net = read_net("crlf_tabs.prototxt");
    assert_eq!(net.name(), "CrlfTabs");
    assert_eq!(types(&net), ["Input", "TanH"]);
    assert_eq!(
        dims(&net.layer[0].input_param.as_ref().unwrap().shape),
        [vec![1, 2]]
    );
}

#[test]
fn quoted_strings_and_python_layers() {
    let net = read_net("python_layer.prototxt");
    assert_eq!(net.name(), "PythonLossExample");
    let python = layer(&net, "distance");
    assert_eq!(python.loss_weight, [1.0]);
    let param = python.python_param.as_ref().unwrap();
    assert_eq!(
        (param.module(), param.layer()),
        ("crema_test_layers", "SquaredDistance")
    );
    assert_eq!(
        param.param_str(),
        r#"{"scale": 0.5, "name": "it's quoted"}"#
    );
    let dummy = layer(&net, "right").dummy_data_param.as_ref().unwrap();
    assert_eq!(dims(&dummy.shape), [vec![6, 4, 3]]);
    let filler = &dummy.data_filler[0];
    assert_eq!(
        (filler.r#type(), filler.min(), filler.max()),
        ("uniform", -1.0, 1.0)
    );
}

#[test]
fn shared_params_keep_names_and_share_modes() {
    let net = read_net("siamese_like_shared.prototxt");
    let a = layer(&net, "tower_a");
    let b = layer(&net, "tower_b");
    let names = |l: &LayerParameter| {
        l.param
            .iter()
            .map(|p| p.name().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(a), names(b));
    assert_eq!(
        b.param[0].share_mode(),
        param_spec::DimCheckMode::Permissive
    );
    assert!(a.param[0].share_mode.is_none());
    assert_eq!(layer(&net, "split_pair").top, ["first", "second"]);
    assert_eq!(
        layer(&net, "pair_loss")
            .contrastive_loss_param
            .as_ref()
            .unwrap()
            .margin(),
        1.25
    );
}

#[test]
fn all_param_messages_values_are_read_by_name_and_kind() {
    let net = read_net("all_param_messages.prototxt");
    let conv = layer(&net, "conv").convolution_param.as_ref().unwrap();
    assert_eq!(
        conv.weight_filler.as_ref().unwrap().variance_norm(),
        filler_parameter::VarianceNorm::FanOut
    );
    assert_eq!(conv.engine(), convolution_parameter::Engine::Caffe);
    let lrn = layer(&net, "norm").lrn_param.as_ref().unwrap();
    assert_eq!(
        (lrn.alpha(), lrn.k(), lrn.norm_region()),
        (1e-4, 2.0, lrn_parameter::NormRegion::AcrossChannels)
    );
    assert_eq!(
        layer(&net, "hinge")
            .hinge_loss_param
            .as_ref()
            .unwrap()
            .norm(),
        hinge_loss_parameter::Norm::L2
    );
    let clip = layer(&net, "clip").clip_param.as_ref().unwrap();
    assert_eq!((clip.min, clip.max), (-2.0, 2.0));
    let reshape = layer(&net, "sequence").reshape_param.as_ref().unwrap();
    assert_eq!(reshape.shape.as_ref().unwrap().dim, [5, 2, -1]);
    assert_eq!(
        layer(&net, "shift").bias_param.as_ref().unwrap().num_axes(),
        1
    );
    let power = layer(&net, "squared").power_param.as_ref().unwrap();
    assert_eq!(
        (power.power(), power.scale(), power.shift()),
        (2.0, 0.5, -1.0)
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Solvers
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn deprecated_solver_type_becomes_type() {
    let raw = read_solver("solver_deprecated_solver_type.prototxt");
    assert_eq!(raw.solver_type(), solver_parameter::SolverType::Nesterov);
    assert!(raw.r#type.is_none());
    let (solver, report) =
        files::read_solver_text(&fixture("solver_deprecated_solver_type.prototxt"))
            .unwrap_or_else(|e| panic!("{e}"));
    assert!(report.upgraded());
    assert_eq!(solver.r#type(), "Nesterov");
    assert!(solver.solver_type.is_none());
    assert_eq!(solver.solver_mode(), solver_parameter::SolverMode::Cpu);

    for (old, new) in [
        ("SGD", "SGD"),
        ("NESTEROV", "Nesterov"),
        ("ADAGRAD", "AdaGrad"),
        ("RMSPROP", "RMSProp"),
        ("ADADELTA", "AdaDelta"),
        ("ADAM", "Adam"),
    ] {
        let mut solver: SolverParameter =
            text::parse(&format!("solver_type: {old}"), "<test>").unwrap();
        upgrade::upgrade_solver(&mut solver, "<test>").unwrap();
        assert_eq!(solver.r#type(), new);
    }
}

#[test]
fn solver_fixtures_cover_each_type_and_lr_policy() {
    let mut types = BTreeSet::new();
    let mut policies = BTreeSet::new();
    for path in good_fixtures().into_iter().filter(|p| is_solver(p)) {
        let (solver, _) = files::read_solver_text(&path).unwrap_or_else(|e| panic!("{e}"));
        types.insert(solver.r#type().to_owned());
        policies.insert(solver.lr_policy().to_owned());
    }
    let want_types: BTreeSet<String> =
        ["SGD", "Nesterov", "AdaGrad", "RMSProp", "AdaDelta", "Adam"]
            .map(String::from)
            .into();
    let want_policies: BTreeSet<String> = [
        "fixed",
        "step",
        "exp",
        "inv",
        "multistep",
        "poly",
        "sigmoid",
    ]
    .map(String::from)
    .into();
    assert_eq!(types, want_types);
    assert_eq!(policies, want_policies);
}

#[test]
fn solver_repeated_fields_and_enums() {
    let multistep = read_solver("solver_multistep_nesterov.prototxt");
    assert_eq!(multistep.stepvalue, [1500, 3000, 4500, 5250]);
    assert_eq!(multistep.weight_decay(), 1e-4);

    let nets = read_solver("solver_inv_train_test_nets.prototxt");
    assert_eq!(nets.train_net(), "nets/twin_towers_train.prototxt");
    assert_eq!(
        nets.test_net,
        [
            "nets/twin_towers_test_a.prototxt",
            "nets/twin_towers_test_b.prototxt"
        ]
    );
    assert_eq!(nets.test_iter, [30, 15]);
    assert_eq!(
        nets.solver_mode(),
        solver_parameter::SolverMode::Gpu,
        "the default"
    );
    assert_eq!(nets.random_seed(), 2024);

    let sgd = read_solver("solver_sgd_step.prototxt");
    assert_eq!(
        sgd.snapshot_format(),
        solver_parameter::SnapshotFormat::Hdf5
    );
    assert_eq!(
        (sgd.device_id(), sgd.stepsize(), sgd.gamma()),
        (1, 3000, 0.1)
    );

    let adam = read_solver("solver_poly_adam.prototxt");
    assert_eq!(
        (adam.momentum2(), adam.delta(), adam.iter_size()),
        (0.999, 1e-7, 4)
    );
    assert!(!adam.test_initialization());

    let sigmoid = read_solver("solver_sigmoid_adadelta.prototxt");
    assert_eq!((sigmoid.gamma(), sigmoid.delta()), (-0.001, 1e-6));

    let states = read_solver("solver_fixed_adagrad_states.prototxt");
    let stages: Vec<_> = states.test_state.iter().map(|s| s.stage.clone()).collect();
    assert_eq!(
        stages,
        [
            vec!["eval-on-train".to_owned()],
            vec!["eval-on-holdout".to_owned()]
        ]
    );
    assert_eq!(states.test_iter, [300, 60]);
    assert_eq!(states.train_state.as_ref().unwrap().level(), 2);
    assert_eq!(states.weights.len(), 2);
    assert_eq!(states.random_seed(), -1);
    assert!(
        states.snapshot_diff() && !states.snapshot_after_train() && !states.layer_wise_reduce()
    );
}

#[test]
fn inline_v1_net_param_upgrades() {
    let solver = read_solver("solver_inline_net_param.prototxt");
    assert_eq!(solver.test_iter, [50, 200]);
    let stages: Vec<_> = solver
        .test_state
        .iter()
        .flat_map(|s| s.stage.clone())
        .collect();
    assert_eq!(stages, ["holdout", "train-set"]);
    let mut net = solver.net_param.clone().unwrap();
    assert_eq!(net.layers.len(), 8);
    let report = upgrade::upgrade_net(&mut net, "inline").unwrap_or_else(|e| panic!("{e}"));
    assert!(report.upgraded());
    assert_eq!(
        types(&net),
        [
            "Data",
            "Data",
            "Data",
            "Convolution",
            "Pooling",
            "InnerProduct",
            "Accuracy",
            "SoftmaxWithLoss"
        ]
    );
    let rules: Vec<_> = net.layer[..3]
        .iter()
        .map(|l| (l.include[0].phase(), l.include[0].stage.clone()))
        .collect();
    assert_eq!(
        rules,
        [
            (Phase::Train, vec![]),
            (Phase::Test, vec!["holdout".to_owned()]),
            (Phase::Test, vec!["train-set".to_owned()])
        ]
    );
    assert_eq!(multipliers(layer(&net, "fc")), [(1.0, 1.0), (2.0, 1.0)]);

    let split = read_solver("solver_inline_train_test_net_param.prototxt");
    assert_eq!(
        split.train_net_param.as_ref().unwrap().name(),
        "InlineTrain"
    );
    let names: Vec<_> = split.test_net_param.iter().map(|n| n.name()).collect();
    assert_eq!(names, ["InlineTestA", "InlineTestB"]);
    assert_eq!(split.test_iter, [5, 7]);
}

// ---------------------------------------------------------------------------------------------------------------
// Checks protobuf's C++ TextFormat makes after parsing, which Caffe's files rely on.
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn missing_required_field_is_an_error() {
    let text = "layer { name: 'c' type: 'Clip' bottom: 'x' top: 'y' clip_param { min: -1 } }";
    let result = text::parse::<NetParameter>(text, "clip.prototxt");
    assert!(
        result.is_err(),
        "parsed with max silently 0: {:?}",
        result.map(|n| n.layer[0].clip_param)
    );
}

#[test]
fn unknown_enum_number_is_an_error() {
    let text = "layer { name: 'p' type: 'Pooling' pooling_param { pool: 7 } }";
    assert!(text::parse::<NetParameter>(text, "pool.prototxt").is_err());
}
