//! Wiring a net: which blob each bottom reads, with in-place layers and shared blobs made explicit.
//!
//! - In-place layers (`bottom: "x" top: "x"`) write a new version of the blob rather than overwriting it, so
//!   that no layer ever reads and writes the same storage; later readers of "x" read the newest version.
//! - A blob version read by several bottoms (or read and also weighted in the loss) gets a Split layer after
//!   its producer, named as Caffe names it (`x_conv1_0_split`), whose tops feed one reader each; its backward
//!   sums their gradients.
//! - A loss layer given no top gets one (Caffe's AutoTopBlobs), named `(automatic)`: it weighs in the loss,
//!   but no layer can read it and it is not an output of the net.
//! - Blob ids are given in the order layers run, each layer's tops consecutively, so every bottom of a layer
//!   has a smaller id than any of its tops (the net relies on this to lend out bottoms and tops at once).

use std::collections::HashMap;

use crema_proto::LayerParameter;

/// The name of the tops a loss layer gets when it names none.
pub const AUTOMATIC_TOP: &str = "(automatic)";

/// One layer of the wired net.
#[derive(Debug, Clone)]
pub struct Node {
    /// Index of the layer among the net's (filtered) layers, or None for an inserted Split.
    pub source: Option<usize>,
    /// The parameters of an inserted Split layer (None for the net's own layers).
    pub split_param: Option<LayerParameter>,
    /// Blob id read by each bottom.
    pub bottoms: Vec<usize>,
    /// Id of the first top; the tops are `first_top .. first_top + top_count`.
    pub first_top: usize,
    pub top_count: usize,
    /// Loss weight of each top.
    pub loss_weights: Vec<f32>,
}

/// The wired net: its layers in running order and the name of every blob id.
#[derive(Debug, Clone)]
pub struct Graph {
    pub nodes: Vec<Node>,
    pub blob_names: Vec<String>,
    /// Whether each blob is an [`AUTOMATIC_TOP`].
    pub automatic: Vec<bool>,
}

/// Wires `layers`, whose tops carry `loss_weights` (one list per layer, one weight per top) and whose last
/// `automatic[i]` tops are [`AUTOMATIC_TOP`]s.
pub fn wire(
    layers: &[LayerParameter],
    loss_weights: &[Vec<f32>],
    automatic: &[usize],
) -> Result<Graph, String> {
    // Pass 1: give every top a version id, and resolve every bottom to the version it reads.
    let mut latest: HashMap<&str, usize> = HashMap::new();
    let mut version_names: Vec<&str> = Vec::new();
    let mut version_producer: Vec<(usize, usize)> = Vec::new(); // (layer, top index)
    let mut version_automatic: Vec<bool> = Vec::new();
    let mut bottoms: Vec<Vec<usize>> = Vec::with_capacity(layers.len());
    let mut tops: Vec<Vec<usize>> = Vec::with_capacity(layers.len());
    for (i, layer) in layers.iter().enumerate() {
        let mut reads = Vec::with_capacity(layer.bottom.len());
        for (j, name) in layer.bottom.iter().enumerate() {
            let version = *latest.get(name.as_str()).ok_or_else(|| {
                format!(
                    "layer \"{}\": bottom[{j}] \"{name}\" is not produced by any earlier layer (is the layer that makes \
                     it excluded in this phase or stage?)",
                    layer.name()
                )
            })?;
            reads.push(version);
        }
        let mut writes = Vec::with_capacity(layer.top.len());
        let named = layer.top.len() - automatic.get(i).copied().unwrap_or(0);
        for (j, name) in layer.top.iter().enumerate() {
            if j >= named {
                // Anonymous: nothing can read it, so it clashes with nothing.
                writes.push(version_names.len());
                version_names.push(name);
                version_producer.push((i, j));
                version_automatic.push(true);
                continue;
            }
            if layer.top[..j].contains(name) {
                return Err(format!(
                    "layer \"{}\": top \"{name}\" is listed twice",
                    layer.name()
                ));
            }
            if latest.contains_key(name.as_str()) && !layer.bottom.contains(name) {
                let (producer, _) = version_producer[latest[name.as_str()]];
                return Err(format!(
                    "layer \"{}\": top \"{name}\" is already produced by layer \"{}\"; a blob may be rewritten only in \
                     place (as both bottom and top of one layer)",
                    layer.name(),
                    layers[producer].name()
                ));
            }
            let version = version_names.len();
            version_names.push(name);
            version_producer.push((i, j));
            version_automatic.push(false);
            latest.insert(name, version);
            writes.push(version);
        }
        bottoms.push(reads);
        tops.push(writes);
    }

    // How many readers each version has; a weighted loss counts as one more.
    let mut readers = vec![0usize; version_names.len()];
    for reads in &bottoms {
        for &version in reads {
            readers[version] += 1;
        }
    }
    let weighted = |version: usize| {
        let (layer, top) = version_producer[version];
        loss_weights[layer].get(top).is_some_and(|&w| w != 0.0)
    };
    let needs_split = |version: usize| readers[version] + usize::from(weighted(version)) > 1;

    // Pass 2: emit layers in order, with Splits after the producers that need them, numbering blobs as we go.
    let mut graph = Graph {
        nodes: Vec::new(),
        blob_names: Vec::new(),
        automatic: Vec::new(),
    };
    let mut final_id: Vec<usize> = vec![usize::MAX; version_names.len()];
    let mut split_outputs: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut split_next: Vec<usize> = vec![0; version_names.len()];
    for (i, layer) in layers.iter().enumerate() {
        let node_bottoms = bottoms[i]
            .iter()
            .map(|&version| match split_outputs.get(&version) {
                Some(outputs) => {
                    let id = outputs[split_next[version]];
                    split_next[version] += 1;
                    id
                }
                None => final_id[version],
            })
            .collect();
        let first_top = graph.blob_names.len();
        for &version in &tops[i] {
            final_id[version] = graph.blob_names.len();
            graph.blob_names.push(version_names[version].to_owned());
            graph.automatic.push(version_automatic[version]);
        }
        let mut node_loss = loss_weights[i].clone();
        node_loss.resize(tops[i].len(), 0.0);
        let split_tops: Vec<(usize, usize)> = tops[i]
            .iter()
            .enumerate()
            .filter(|(_, &v)| needs_split(v))
            .map(|(j, &v)| (j, v))
            .collect();
        for &(j, _) in &split_tops {
            node_loss[j] = 0.0;
        }
        graph.nodes.push(Node {
            source: Some(i),
            split_param: None,
            bottoms: node_bottoms,
            first_top,
            top_count: tops[i].len(),
            loss_weights: node_loss,
        });
        for (j, version) in split_tops {
            let count = readers[version] + usize::from(weighted(version));
            let blob = version_names[version];
            let mut split = LayerParameter {
                name: Some(format!("{blob}_{}_{j}_split", layer.name())),
                r#type: Some("Split".into()),
                bottom: vec![blob.to_owned()],
                ..Default::default()
            };
            let first = graph.blob_names.len();
            for k in 0..count {
                let name = format!("{blob}_{}_{j}_split_{k}", layer.name());
                split.top.push(name.clone());
                graph.blob_names.push(name);
                graph.automatic.push(false);
            }
            let mut split_loss = vec![0.0; count];
            if weighted(version) {
                split_loss[0] = loss_weights[i][j];
                split.loss_weight = split_loss.clone();
                split_next[version] = 1;
            }
            split_outputs.insert(version, (first..first + count).collect());
            graph.nodes.push(Node {
                source: None,
                split_param: Some(split),
                bottoms: vec![final_id[version]],
                first_top: first,
                top_count: count,
                loss_weights: split_loss,
            });
        }
    }
    Ok(graph)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layers(text: &str) -> Vec<LayerParameter> {
        crema_proto::text::parse::<crema_proto::NetParameter>(text, "t")
            .unwrap()
            .layer
    }

    fn no_loss(layers: &[LayerParameter]) -> Vec<Vec<f32>> {
        layers.iter().map(|l| vec![0.0; l.top.len()]).collect()
    }

    #[test]
    fn in_place_layers_write_a_new_version() {
        let net = layers(
            "layer { name: 'in' top: 'x' } layer { name: 'relu' bottom: 'x' top: 'x' } layer { name: 'fc' bottom: 'x' top: 'y' }",
        );
        let graph = wire(&net, &no_loss(&net), &[]).unwrap();
        assert_eq!(graph.blob_names, ["x", "x", "y"]);
        assert_eq!(graph.nodes[1].bottoms, [0]);
        assert_eq!(graph.nodes[1].first_top, 1);
        assert_eq!(graph.nodes[2].bottoms, [1]);
    }

    #[test]
    fn a_blob_read_twice_is_split() {
        let net = layers(
            "layer { name: 'in' top: 'x' } layer { name: 'a' bottom: 'x' top: 'a' } layer { name: 'b' bottom: 'x' bottom: 'a' top: 'b' }",
        );
        let graph = wire(&net, &no_loss(&net), &[]).unwrap();
        let names: Vec<_> = graph.nodes.iter().map(|n| n.source).collect();
        assert_eq!(names, [Some(0), None, Some(1), Some(2)]);
        let split = &graph.nodes[1];
        assert_eq!(split.split_param.as_ref().unwrap().name(), "x_in_0_split");
        assert_eq!(
            &graph.blob_names[1..3],
            ["x_in_0_split_0", "x_in_0_split_1"]
        );
        assert_eq!(graph.nodes[2].bottoms, [1]);
        assert_eq!(graph.nodes[3].bottoms, [2, 3]);
        // Every bottom id is below the layer's first top.
        for node in &graph.nodes {
            assert!(node.bottoms.iter().all(|&b| b < node.first_top));
        }
    }

    #[test]
    fn a_weighted_top_that_is_also_read_keeps_its_weight_on_split_top_zero() {
        let net = layers("layer { name: 'in' top: 'x' } layer { name: 'r' bottom: 'x' top: 'y' }");
        let graph = wire(&net, &[vec![2.0], vec![0.0]], &[]).unwrap();
        assert_eq!(graph.nodes[0].loss_weights, [0.0]);
        assert_eq!(graph.nodes[1].loss_weights, [2.0, 0.0]);
        assert_eq!(graph.nodes[2].bottoms, [2]);
    }

    #[test]
    fn unknown_bottoms_and_second_producers_are_errors() {
        let net = layers("layer { name: 'a' bottom: 'nope' top: 'y' }");
        assert!(wire(&net, &no_loss(&net), &[])
            .unwrap_err()
            .contains("bottom[0] \"nope\" is not produced"));
        let net = layers("layer { name: 'a' top: 'y' } layer { name: 'b' top: 'y' }");
        assert!(wire(&net, &no_loss(&net), &[])
            .unwrap_err()
            .contains("already produced by layer \"a\""));
    }
}
