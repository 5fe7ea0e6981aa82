//! Data: tops filled from an LMDB of Caffe `Datum` records, with no bottoms (`data` = the next batch of
//! transformed images, optional `label` = their labels).
//!
//! Parameters: `data_param { source batch_size backend prefetch rand_skip force_encoded_color }` and
//! `transform_param` (see [`crate::data::transform`]). `source` is the LMDB folder; `backend` must be LMDB (crema
//! reads no LevelDB; left unset, Caffe's default LEVELDB, the source is read when it is an LMDB). Records are
//! read in key order, as Caffe's cursor does, wrapping around at the end; `rand_skip` (deprecated in Caffe)
//! skips a random number of records below it at the start. A record holds raw 8-bit pixels, `float_data`, or
//! an encoded JPEG/PNG image, decoded unchanged unless `force_color`/`force_gray` (or
//! `data_param.force_encoded_color`) say otherwise; `force_color`/`force_gray` on raw records are refused,
//! since they cannot apply (Caffe logs an error for every record and goes on).
//!
//! Tops: `data` of shape `[batch_size, C, H, W]` (H and W the crop size when cropping), from the first record;
//! every other record must give the same shape (Caffe reshapes for each batch, which crema's nets do not
//! follow), and an error names the record that does not. `label` of shape `[batch_size]`.
//!
//! `sampling_param { mode: CLASS_BALANCED | SQRT }` draws each record by its label instead
//! ([`crate::data::sampling`]): every record's key and label are read once at setup, and the records of each
//! batch are then read by key in the prefetch thread; the saved position also holds the sampler's generator.
//!
//! Batches are made ahead on a background thread ([`crate::data::prefetch`]), `data_param.prefetch` of them
//! (default 4). A record that cannot be read or decoded stops the thread and fails the forward pass that would
//! have used it, naming the database and the record's key. The layer's state (for solverstates) is the key of
//! the first record of the next batch it will hand out, and the transformer's generator. Caffe's deprecated
//! `data_param` fields `scale`, `mean_file`, `crop_size` and `mirror` are refused with a pointer to
//! `transform_param` (an old V1 net has them moved there when it is upgraded).

use std::fmt::Write as _;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use crema_proto::caffe::data_parameter::Db;
use rand::Rng as _;

use crate::blob::{Blob, MAX_BLOB_COUNT};
use crate::data::datum::{self, DatumPixels};
use crate::data::lmdb::{key_text, LmdbReader};
use crate::data::pixels::{invalid, ColorMode};
use crate::data::prefetch::{Batch, BatchSource, Fill, Prefetcher, MAX_PREFETCH};
use crate::data::sampling::{sampler_for, ClassSampler};
use crate::data::transform::Transformer;
use crate::layer::{
    required_count, required_text, Arity, Layer, LayerContext, LayerError, LayerResult,
};
use crate::math::Rng;

/// A data layer whose batches come from a prefetched [`BatchSource`]: Data and ImageData.
pub struct PrefetchingData<S: BatchSource> {
    type_name: &'static str,
    prefetcher: Prefetcher<S>,
    batch_size: usize,
    /// The shape of one transformed image (C, H, W).
    item: [usize; 3],
    min_tops: usize,
}

impl<S: BatchSource> PrefetchingData<S> {
    /// The layer `type_name` handing out batches of `batch_size` images of shape `item` from `source`,
    /// `depth` batches prefetched; it has `min_tops` to 2 tops (data, label). An error when a batch would
    /// hold more values than a blob may.
    pub fn new(
        type_name: &'static str,
        source: S,
        depth: usize,
        batch_size: usize,
        item: [usize; 3],
        min_tops: usize,
    ) -> LayerResult<Self> {
        let len = item
            .iter()
            .try_fold(batch_size, |n, &d| n.checked_mul(d))
            .filter(|&n| n <= MAX_BLOB_COUNT)
            .ok_or_else(|| {
                LayerError::new(format!(
                    "a batch of {batch_size} images of {item:?} holds more than {MAX_BLOB_COUNT} values"
                ))
            })?;
        Ok(PrefetchingData {
            type_name,
            prefetcher: Prefetcher::new(source, depth, len, batch_size),
            batch_size,
            item,
            min_tops,
        })
    }

    /// The shape of the data top.
    pub fn data_shape(&self) -> [usize; 4] {
        [self.batch_size, self.item[0], self.item[1], self.item[2]]
    }
}

impl<S: BatchSource> Layer for PrefetchingData<S> {
    fn type_name(&self) -> &'static str {
        self.type_name
    }

    fn bottom_arity(&self) -> Arity {
        Arity::exactly(0)
    }

    fn top_arity(&self) -> Arity {
        Arity::between(self.min_tops, 2)
    }

    fn reshape(&mut self, _bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        top[0]
            .reshape(&self.data_shape())
            .map_err(|e| LayerError::new(e.to_string()))?;
        if let Some(label) = top.get_mut(1) {
            label
                .reshape(&[self.batch_size])
                .map_err(|e| LayerError::new(e.to_string()))?;
        }
        Ok(())
    }

    fn forward(&mut self, _bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let (data, rest) = top.split_at_mut(1);
        let label = rest.first_mut().map(|t| t.data_mut());
        self.prefetcher
            .next_batch(data[0].data_mut(), label)
            .map_err(LayerError::new)
    }

    fn top_item_origin(&self, top: usize, index: usize) -> Option<String> {
        let per_item = if top == 0 {
            self.item.iter().product::<usize>().max(1)
        } else {
            1
        };
        self.prefetcher.origin(index / per_item).map(str::to_owned)
    }

    fn state(&self) -> Option<Vec<u8>> {
        Some(self.prefetcher.position().to_vec())
    }

    fn set_state(&mut self, state: &[u8]) -> LayerResult {
        self.prefetcher
            .set_position(state)
            .map_err(|e| LayerError::new(format!("the saved reading position: {e}")))
    }
}

/// The batches prefetched: `data_param.prefetch` (default 4), at most [`MAX_PREFETCH`]. ImageData reads it
/// too, as Caffe's prefetching layers all do.
pub(crate) fn prefetch_depth(ctx: &LayerContext) -> LayerResult<usize> {
    let depth = ctx.param.data_param.as_ref().map_or(4, |p| p.prefetch()) as usize;
    if depth > MAX_PREFETCH {
        return Err(LayerError::new(format!(
            "data_param.prefetch: {depth} batches; at most {MAX_PREFETCH}"
        )));
    }
    Ok(depth)
}

/// Refuses the transformation fields Caffe deprecated in the data layers' own parameters (`block`), which
/// Caffe ignores today: they belong in `transform_param`.
pub(crate) fn refuse_deprecated(
    block: &str,
    scale: f32,
    mean_file: Option<&str>,
    crop_size: u32,
    mirror: bool,
) -> LayerResult {
    let moved = [
        ("scale", scale != 1.0),
        ("mean_file", mean_file.is_some()),
        ("crop_size", crop_size != 0),
        ("mirror", mirror),
    ];
    if let Some((field, _)) = moved.iter().find(|(_, given)| *given) {
        return Err(LayerError::new(format!(
            "{block}.{field}: deprecated (Caffe ignores it here); give it as transform_param {{ {field}: ... }}"
        )));
    }
    Ok(())
}

/// The transformer of `transform_param` (none: identity).
pub(crate) fn transformer(ctx: &LayerContext) -> LayerResult<Transformer> {
    let param = ctx.param.transform_param.clone().unwrap_or_default();
    Transformer::new(&param, ctx.phase, ctx.search_dirs).map_err(LayerError::new)
}

/// Records of an LMDB, transformed into batches.
struct DatumSource {
    reader: LmdbReader,
    /// The key of the next record to read (empty: the first).
    next_key: Vec<u8>,
    rng: Rng,
    transformer: Transformer,
    mode: ColorMode,
    item: [usize; 3],
    batch_size: usize,
    /// With `sampling_param` other than INSTANCE: draws each record by its label (an index into `keys`) instead
    /// of reading in key order.
    sampler: Option<(ClassSampler, Vec<Vec<u8>>)>,
}

/// Makes a Data layer: opens the LMDB and reads its first record for the tops' shape.
pub fn create(ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    let param = ctx.param.data_param.clone().unwrap_or_default();
    let source = required_text(
        param.source.as_deref(),
        "data_param.source",
        "the LMDB folder to read",
    )?;
    let batch_size = required_count(
        param.batch_size(),
        "data_param.batch_size",
        "the number of images of a batch",
    )?;
    if param.backend.is_some() && param.backend() == Db::Leveldb {
        return Err(LayerError::new(
            "data_param.backend: LEVELDB is not supported; crema reads LMDB only (make one with `crema \
             convert-imageset`, and set backend: LMDB)",
        ));
    }
    refuse_deprecated(
        "data_param",
        param.scale(),
        param.mean_file.as_deref(),
        param.crop_size(),
        param.mirror(),
    )?;
    let depth = prefetch_depth(ctx)?;
    let transformer = transformer(ctx)?;
    let path = ctx.resolve(source);
    let reader = LmdbReader::open(&path).map_err(|e| {
        let hint = if param.backend.is_none() {
            " (backend is not set, so Caffe would read a LEVELDB; crema reads LMDB only)"
        } else {
            ""
        };
        LayerError::new(format!("data_param.source: {e}{hint}"))
    })?;
    let mode = transformer
        .color_mode()
        .unwrap_or(if param.force_encoded_color() {
            ColorMode::Color
        } else {
            ColorMode::Native
        });
    let Some((key, value)) = reader
        .first()
        .map_err(|e| LayerError::new(format!("data_param.source: {e}")))?
    else {
        return Err(LayerError::new(format!(
            "data_param.source: {}: the LMDB holds no record",
            path.display()
        )));
    };
    let record = |reason: String| {
        LayerError::new(format!(
            "data_param.source: {}: record \"{}\": {reason}",
            path.display(),
            key_text(&key)
        ))
    };
    let first = datum::parse(&value).map_err(record)?;
    let pixels = datum::pixels(&first, mode).map_err(record)?;
    if matches!(pixels, DatumPixels::Raw(_)) && transformer.color_mode().is_some() {
        let field = if transformer.color_mode() == Some(ColorMode::Color) {
            "force_color"
        } else {
            "force_gray"
        };
        return Err(LayerError::new(format!(
            "transform_param.{field}: applies to encoded records only, and the records of {} hold raw pixels",
            path.display()
        )));
    }
    let view = pixels.view();
    let item = transformer
        .output_shape(view.channels, view.height, view.width)
        .map_err(record)?;
    let mut rng = ctx.rng.clone();
    let mut next_key = Vec::new();
    if param.rand_skip() > 0 {
        let skip = rng.random_range(0..param.rand_skip()) as usize;
        next_key = reader
            .visit_from(&[], skip, |_, _, _| Ok(ControlFlow::Continue(())))
            .map_err(|e| LayerError::new(format!("data_param.rand_skip: {e}")))?
            .unwrap_or_default();
    }
    let sampling = ctx.param.sampling_param.clone().unwrap_or_default();
    let mut keys = Vec::new();
    let sampler = sampler_for(
        sampling.mode(),
        || {
            let mut labels = Vec::new();
            reader
                .for_each(|key, value| {
                    let datum = datum::parse(value).map_err(|reason| {
                        invalid(
                            reader.path(),
                            format!("record \"{}\": {reason}", key_text(key)),
                        )
                    })?;
                    keys.push(key.to_vec());
                    labels.push(f64::from(datum.label()));
                    Ok(())
                })
                .map_err(|e| e.to_string())?;
            Ok(labels)
        },
        crate::data::sampling::sampling_rng(&ctx.rng),
    )
    .map_err(|e| LayerError::new(format!("sampling_param: {e} ({})", reader.path().display())))?;
    let source = DatumSource {
        reader,
        next_key,
        rng,
        transformer,
        mode,
        item,
        batch_size,
        sampler: sampler.map(|s| (s, keys)),
    };
    let min_tops = 1;
    Ok(Box::new(PrefetchingData::new(
        "Data", source, depth, batch_size, item, min_tops,
    )?))
}

impl DatumSource {
    /// Transforms the record `key` (`value`) into place `i` of `batch`; errors name the record.
    #[allow(clippy::too_many_arguments)]
    fn fill_record(
        path: &Path,
        transformer: &Transformer,
        mode: ColorMode,
        item: [usize; 3],
        rng: &mut Rng,
        batch: &mut Batch,
        i: usize,
        key: &[u8],
        value: &[u8],
    ) -> crate::Result<()> {
        let len: usize = item.iter().product();
        let fail =
            |reason: String| invalid(path, format!("record \"{}\": {reason}", key_text(key)));
        let datum = datum::parse(value).map_err(fail)?;
        let pixels = datum::pixels(&datum, mode).map_err(fail)?;
        let view = pixels.view();
        let shape = transformer
            .output_shape(view.channels, view.height, view.width)
            .map_err(fail)?;
        if shape != item {
            return Err(fail(format!(
                "the image is {} × {} × {}, which transforms to {shape:?}, but the batches are {item:?} \
                 (from the first record); every record needs the same size",
                view.channels, view.height, view.width
            )));
        }
        let out = &mut batch.data[i * len..(i + 1) * len];
        transformer.transform(view, rng, out).map_err(fail)?;
        if !datum.float_data.is_empty() {
            if let Some(at) = out.iter().position(|v| !v.is_finite()) {
                return Err(fail(format!(
                    "float_data holds {} (value {at} after the transform): a net cannot learn from it",
                    out[at]
                )));
            }
        }
        batch.label[i] = datum.label() as f32;
        let origin = &mut batch.origins[i];
        origin.clear();
        let _ = write!(origin, "record \"{}\" of {}", key_text(key), path.display());
        Ok(())
    }
}

impl BatchSource for DatumSource {
    fn fill(&mut self, batch: &mut Batch, stop: &AtomicBool) -> Result<Fill, String> {
        let DatumSource {
            reader,
            rng,
            transformer,
            mode,
            item,
            sampler,
            ..
        } = self;
        let path = reader.path();
        if let Some((sampler, keys)) = sampler {
            for i in 0..self.batch_size {
                if stop.load(Ordering::Relaxed) {
                    return Ok(Fill::Stopped);
                }
                let key = &keys[sampler.draw()];
                reader
                    .visit_key(key, |value| {
                        Self::fill_record(
                            path,
                            transformer,
                            *mode,
                            *item,
                            rng,
                            batch,
                            i,
                            key,
                            value,
                        )
                    })
                    .map_err(|e| e.to_string())?;
            }
            return Ok(Fill::Done);
        }
        let next = reader
            .visit_from(&self.next_key, self.batch_size, |i, key, value| {
                if stop.load(Ordering::Relaxed) {
                    return Ok(ControlFlow::Break(()));
                }
                Self::fill_record(path, transformer, *mode, *item, rng, batch, i, key, value)?;
                Ok(ControlFlow::Continue(()))
            })
            .map_err(|e| e.to_string())?;
        match next {
            Some(key) => {
                self.next_key = key;
                Ok(Fill::Done)
            }
            None => Ok(Fill::Stopped),
        }
    }

    /// The next key (a little-endian u64 length, then its bytes), then the generator's state; when sampling,
    /// the sampler's generator after it.
    fn position(&self) -> Vec<u8> {
        let mut bytes = (self.next_key.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(&self.next_key);
        bytes.extend_from_slice(&crate::math::rng_state(&self.rng));
        if let Some((sampler, _)) = &self.sampler {
            bytes.extend_from_slice(&sampler.state());
        }
        bytes
    }

    fn set_position(&mut self, position: &[u8]) -> Result<(), String> {
        let damaged =
            || "not a Data layer's position (damaged, or saved by another layer type)".to_owned();
        let len = position
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n <= 511)
            .ok_or_else(damaged)?;
        let key = position.get(8..8 + len).ok_or_else(damaged)?;
        let states = position.get(8 + len..).ok_or_else(damaged)?;
        let state_len = crate::math::rng_state(&self.rng).len();
        let rng_bytes = match (&mut self.sampler, states.len() / state_len) {
            (Some((sampler, _)), 2) if states.len() == 2 * state_len => {
                if !sampler.set_state(&states[state_len..]) {
                    return Err(damaged());
                }
                &states[..state_len]
            }
            (None, 1) => states,
            (Some(_), _) => {
                return Err(
                    "not a sampling Data layer's position (saved without sampling_param?)".into(),
                )
            }
            (None, _) => return Err(damaged()),
        };
        let rng = crate::math::rng_from_state(rng_bytes).ok_or_else(damaged)?;
        self.next_key = key.to_vec();
        self.rng = rng;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::datum::{encoded_datum, raw_datum};
    use crate::data::lmdb::test_db::{fresh, write};
    use crate::data::lmdb::LmdbWriter;
    use crate::data::pixels::{Encoding, Image};
    use crate::layers::test_support::{context, context_in};
    use crema_proto::caffe::Phase;
    use crema_proto::Datum;
    use prost::Message;

    /// Record i: a 3 × 2 × 3 image whose values are 10i + position (position 0..18), label i.
    fn record(i: usize) -> (String, Datum) {
        let values: Vec<u8> = (0..18).map(|p| (10 * i + p) as u8).collect();
        let image = Image::new(3, 2, 3, values).unwrap();
        (format!("{i:08}_img{i}.png"), raw_datum(&image, i as i32))
    }

    fn db(name: &str, n: usize) -> std::path::PathBuf {
        let path = fresh(name);
        write(&path, &(0..n).map(record).collect::<Vec<_>>());
        path
    }

    fn layer_in(text: &str, phase: Phase) -> LayerResult<Box<dyn Layer>> {
        let param = crema_proto::text::parse(text, "t").unwrap();
        create(&mut context_in(&param, phase))
    }

    fn layer(text: &str) -> LayerResult<Box<dyn Layer>> {
        layer_in(text, Phase::Train)
    }

    fn error(text: &str) -> String {
        layer(text).err().expect("the layer was made").0
    }

    /// Sets up `layer` with `tops` tops and runs `n` forward passes, returning the tops after each.
    fn run(layer: &mut dyn Layer, tops: usize, n: usize) -> Vec<Vec<Blob>> {
        let mut blobs = vec![Blob::default(); tops];
        let mut refs: Vec<&mut Blob> = blobs.iter_mut().collect();
        layer.setup(&[], &mut refs).unwrap();
        layer.reshape(&[], &mut refs).unwrap();
        (0..n)
            .map(|_| {
                let mut refs: Vec<&mut Blob> = blobs.iter_mut().collect();
                layer.forward(&[], &mut refs).unwrap();
                blobs.clone()
            })
            .collect()
    }

    fn labels(batches: &[Vec<Blob>]) -> Vec<Vec<f32>> {
        batches.iter().map(|b| b[1].data().to_vec()).collect()
    }

    #[test]
    fn raw_records_come_back_with_their_bytes_and_labels_in_key_order() {
        let path = db("layer-raw", 5);
        let text = format!(
            r#"type: "Data" top: "data" top: "label"
               data_param {{ source: "{}" batch_size: 2 backend: LMDB }}"#,
            path.display()
        );
        let mut l = layer(&text).unwrap();
        assert_eq!(l.type_name(), "Data");
        let batches = run(l.as_mut(), 2, 4);
        assert_eq!(batches[0][0].shape(), [2, 3, 2, 3]);
        assert_eq!(batches[0][1].shape(), [2]);
        let expected: Vec<f32> = (0..36)
            .map(|p| p as f32 + if p >= 18 { -8.0 } else { 0.0 })
            .collect();
        assert_eq!(batches[0][0].data(), expected);
        // Wraps around after the fifth record.
        assert_eq!(
            labels(&batches),
            [[0.0, 1.0], [2.0, 3.0], [4.0, 0.0], [1.0, 2.0]]
        );
        assert_eq!(
            batches[2][0].data()[..18],
            (40..58).map(|v| v as f32).collect::<Vec<_>>()[..]
        );
    }

    #[test]
    fn encoded_records_are_decoded_and_transformed() {
        let path = fresh("layer-encoded");
        let images: Vec<Image> = (0..3)
            .map(|i| Image::new(3, 4, 4, (0..48).map(|p| (p * 5 + i) as u8).collect()).unwrap())
            .collect();
        let records: Vec<(String, Datum)> = images
            .iter()
            .enumerate()
            .map(|(i, image)| {
                (
                    format!("{i}"),
                    encoded_datum(image.encode(Encoding::Png).unwrap(), 7 + i as i32),
                )
            })
            .collect();
        write(&path, &records);
        // Cropped at the centre in TEST, scaled, mean subtracted; one top.
        let text = format!(
            r#"top: "data"
               transform_param {{ crop_size: 2 scale: 0.5 mean_value: 1 }}
               data_param {{ source: "{}" batch_size: 3 backend: LMDB }}"#,
            path.display()
        );
        let mut l = layer_in(&text, Phase::Test).unwrap();
        let batch = &run(l.as_mut(), 1, 1)[0][0];
        assert_eq!(batch.shape(), [3, 3, 2, 2]);
        // Image 1, channel 2, crop rows 1..3 and columns 1..3: positions 32 + 5, 6, 9, 10.
        let at = |p: usize| ((p * 5 + 1) as f32 - 1.0) * 0.5;
        assert_eq!(
            batch.data()[12 + 8..12 + 12],
            [at(37), at(38), at(41), at(42)]
        );
        // force_gray decodes encoded records as grey.
        let text = format!(
            r#"top: "data" top: "label" transform_param {{ force_gray: true }}
               data_param {{ source: "{}" batch_size: 1 backend: LMDB }}"#,
            path.display()
        );
        let mut l = layer(&text).unwrap();
        let batches = run(l.as_mut(), 2, 2);
        assert_eq!(batches[0][0].shape(), [1, 1, 4, 4]);
        let gray = images[1].to_gray();
        let expected: Vec<f32> = gray.values().iter().map(|&v| f32::from(v)).collect();
        assert_eq!(batches[1][0].data(), expected);
        assert_eq!(labels(&batches), [[7.0], [8.0]]);
    }

    #[test]
    fn float_data_records() {
        let path = fresh("layer-float");
        let datum = Datum {
            channels: Some(1),
            height: Some(1),
            width: Some(2),
            float_data: vec![0.25, -3.0],
            label: Some(1),
            ..Datum::default()
        };
        write(&path, &[("a".into(), datum)]);
        let text = format!(
            r#"top: "data" top: "label" transform_param {{ scale: 2 }}
               data_param {{ source: "{}" batch_size: 2 backend: LMDB }}"#,
            path.display()
        );
        let batch = run(layer(&text).unwrap().as_mut(), 2, 1).remove(0);
        assert_eq!(batch[0].data(), [0.5, -6.0, 0.5, -6.0]);
        assert_eq!(batch[1].data(), [1.0, 1.0]);
    }

    #[test]
    fn random_mirror_and_crop_repeat_for_a_seed() {
        let path = db("layer-random", 4);
        let text = format!(
            r#"top: "data" top: "label" transform_param {{ mirror: true crop_size: 1 }}
               data_param {{ source: "{}" batch_size: 4 backend: LMDB }}"#,
            path.display()
        );
        let param = crema_proto::text::parse(&text, "t").unwrap();
        let batches = |seed: u64| {
            let mut ctx = context(&param);
            ctx.rng = crate::math::rng(seed, 3);
            let mut l = create(&mut ctx).unwrap();
            run(l.as_mut(), 2, 5)
                .iter()
                .map(|b| b[0].data().to_vec())
                .collect::<Vec<_>>()
        };
        let a = batches(1);
        assert_eq!(a, batches(1));
        assert_ne!(a, batches(2));
        // Crops of one pixel: every value is one of its record's.
        for batch in &a {
            for (i, v) in batch.chunks(3).enumerate() {
                for (c, &v) in v.iter().enumerate() {
                    let base = (10 * i + 6 * c) as f32;
                    assert!((base..base + 6.0).contains(&v), "{v}");
                }
            }
        }
    }

    #[test]
    fn the_state_is_the_next_batch_handed_out() {
        let path = db("layer-state", 7);
        let text = format!(
            r#"top: "data" top: "label" transform_param {{ mirror: true }}
               data_param {{ source: "{}" batch_size: 3 backend: LMDB prefetch: 2 }}"#,
            path.display()
        );
        let mut l = layer(&text).unwrap();
        run(l.as_mut(), 2, 2);
        std::thread::sleep(std::time::Duration::from_millis(30));
        let state = l.state().unwrap();
        let expected = run(l.as_mut(), 2, 3);
        assert_eq!(
            labels(&expected),
            [[6.0, 0.0, 1.0], [2.0, 3.0, 4.0], [5.0, 6.0, 0.0]]
        );
        // A fresh layer (another seed) put at the saved state hands out the same batches.
        let param = crema_proto::text::parse(&text, "t").unwrap();
        let mut ctx = context(&param);
        ctx.rng = crate::math::rng(99, 0);
        let mut other = create(&mut ctx).unwrap();
        other.set_state(&state).unwrap();
        assert_eq!(run(other.as_mut(), 2, 3), expected);
        // Back into the same layer, with batches prefetched.
        l.set_state(&state).unwrap();
        assert_eq!(run(l.as_mut(), 2, 3), expected);
        let err = l.set_state(&[1, 2, 3]).unwrap_err().0;
        assert!(err.contains("not a Data layer's position"), "{err}");
    }

    #[test]
    fn errors_name_the_field() {
        let path = db("layer-errors", 2);
        let p = path.display();
        let err = error(r#"top: "data" data_param { batch_size: 2 }"#);
        assert!(err.starts_with("data_param.source: missing"), "{err}");
        let err = error(&format!(
            r#"top: "data" data_param {{ source: "{p}" backend: LMDB }}"#
        ));
        assert!(err.starts_with("data_param.batch_size: "), "{err}");
        let err = error(&format!(
            r#"top: "data" data_param {{ source: "{p}" batch_size: 1 backend: LEVELDB }}"#
        ));
        assert!(err.starts_with("data_param.backend: LEVELDB"), "{err}");
        let err = error(&format!(
            r#"top: "data" data_param {{ source: "{p}" batch_size: 1 backend: LMDB mirror: true }}"#
        ));
        assert!(err.starts_with("data_param.mirror: deprecated"), "{err}");
        let err = error(&format!(
            r#"top: "data" data_param {{ source: "{p}" batch_size: 1 backend: LMDB prefetch: 100000 }}"#
        ));
        assert!(err.starts_with("data_param.prefetch: "), "{err}");
        let err = error(&format!(
            r#"top: "data" data_param {{ source: "{p}" batch_size: 4000000000 backend: LMDB }}"#
        ));
        assert!(err.contains("holds more than"), "{err}");
        let err = error(r#"top: "data" data_param { source: "/nonexistent/db" batch_size: 1 }"#);
        assert!(
            err.starts_with("data_param.source: ")
                && err.contains("/nonexistent/db")
                && err.contains("LEVELDB"),
            "{err}"
        );
        let err = error(&format!(
            r#"top: "data" transform_param {{ crop_size: 3 }}
               data_param {{ source: "{p}" batch_size: 1 backend: LMDB }}"#
        ));
        assert!(
            err.contains("record \"00000000_img0.png\"") && err.contains("crop_size 3"),
            "{err}"
        );
        let err = error(&format!(
            r#"top: "data" transform_param {{ force_color: true }}
               data_param {{ source: "{p}" batch_size: 1 backend: LMDB }}"#
        ));
        assert!(err.starts_with("transform_param.force_color: "), "{err}");
        // Unset backend with an LMDB: read.
        assert!(layer(&format!(
            r#"top: "data" data_param {{ source: "{p}" batch_size: 1 }}"#
        ))
        .is_ok());
        let empty = fresh("layer-empty");
        write(&empty, &[]);
        let err = error(&format!(
            r#"top: "data" data_param {{ source: "{}" batch_size: 1 backend: LMDB }}"#,
            empty.display()
        ));
        assert!(err.contains("holds no record"), "{err}");
    }

    #[test]
    fn corrupt_records_fail_forward_naming_the_key() {
        let path = fresh("layer-corrupt");
        let mut writer = LmdbWriter::create(&path).unwrap();
        for i in 0..3 {
            let (key, datum) = record(i);
            writer.put(key.as_bytes(), &datum.encode_to_vec()).unwrap();
        }
        let (_, datum) = record(3);
        let bytes = datum.encode_to_vec();
        writer
            .put(b"00000003_cut", &bytes[..bytes.len() / 2])
            .unwrap();
        let small = raw_datum(&Image::new(3, 1, 2, vec![0; 6]).unwrap(), 4);
        writer
            .put(b"00000004_size", &small.encode_to_vec())
            .unwrap();
        let png = Image::new(3, 2, 3, vec![0; 18])
            .unwrap()
            .encode(Encoding::Png)
            .unwrap();
        writer
            .put(
                b"00000005_png",
                &encoded_datum(png[..png.len() / 2].to_vec(), 0).encode_to_vec(),
            )
            .unwrap();
        writer.finish().unwrap();
        let text = format!(
            r#"top: "data" top: "label"
               data_param {{ source: "{}" batch_size: 3 backend: LMDB }}"#,
            path.display()
        );
        let mut l = layer(&text).unwrap();
        let (mut data, mut label) = (Blob::default(), Blob::default());
        l.reshape(&[], &mut [&mut data, &mut label]).unwrap();
        l.forward(&[], &mut [&mut data, &mut label]).unwrap();
        let err = l.forward(&[], &mut [&mut data, &mut label]).unwrap_err().0;
        assert!(
            err.contains("record \"00000003_cut\"") && err.contains(&path.display().to_string()),
            "{err}"
        );
        // The error stays; a restored position past the record reads on and meets the next bad one.
        assert_eq!(
            l.forward(&[], &mut [&mut data, &mut label]).unwrap_err().0,
            err
        );
        let mut state = (12u64).to_le_bytes().to_vec();
        state.extend_from_slice(b"00000004_siz");
        state.extend_from_slice(&crate::math::rng_state(&crate::math::rng(1, 0)));
        l.set_state(&state).unwrap();
        let err = l.forward(&[], &mut [&mut data, &mut label]).unwrap_err().0;
        assert!(
            err.contains("record \"00000004_size\"")
                && err.contains("every record needs the same size"),
            "{err}"
        );
        let mut state = (12u64).to_le_bytes().to_vec();
        state.extend_from_slice(b"00000005_png");
        state.extend_from_slice(&crate::math::rng_state(&crate::math::rng(1, 0)));
        l.set_state(&state).unwrap();
        let err = l.forward(&[], &mut [&mut data, &mut label]).unwrap_err().0;
        assert!(err.contains("record \"00000005_png\""), "{err}");
    }

    #[test]
    fn sampling_draws_records_by_label_and_resumes() {
        // 12 records: label 0 nine times, 1 twice, 2 once; record i's image holds 10 × label + position.
        let path = fresh("sampling");
        let labels = [[0; 9].as_slice(), &[1; 2], &[2]].concat();
        let records: Vec<(String, Datum)> = labels
            .iter()
            .enumerate()
            .map(|(i, &label)| {
                let values: Vec<u8> = (0..18).map(|p| (10 * label + p) as u8).collect();
                let image = Image::new(3, 2, 3, values).unwrap();
                (format!("{i:08}"), raw_datum(&image, label))
            })
            .collect();
        write(&path, &records);
        let text = format!(
            r#"top: "data" top: "label" data_param {{ source: "{}" batch_size: 8 backend: LMDB }}
               sampling_param {{ mode: CLASS_BALANCED }}"#,
            path.display()
        );
        let batches = run(layer(&text).unwrap().as_mut(), 2, 150);
        let mut counts = [0u64; 3];
        for batch in &batches {
            for (image, &label) in batch[0].data().chunks_exact(18).zip(batch[1].data()) {
                assert_eq!(image[0], 10.0 * label);
                counts[label as usize] += 1;
            }
        }
        let chi = crate::data::sampling::chi_squared(&counts, &[1.0 / 3.0; 3]);
        assert!(chi < 13.8, "{counts:?}: chi² {chi}");

        let mut first = layer(&text).unwrap();
        run(first.as_mut(), 2, 2);
        let state = first.state().unwrap();
        let mut resumed = layer(&text).unwrap();
        let mut blobs = vec![Blob::default(); 2];
        let mut refs: Vec<&mut Blob> = blobs.iter_mut().collect();
        resumed.setup(&[], &mut refs).unwrap();
        resumed.set_state(&state).unwrap();
        let tail = run(resumed.as_mut(), 2, 3);
        assert_eq!(labels_of(&tail), labels_of(&batches[2..5]));
        let plain = text.replace("sampling_param { mode: CLASS_BALANCED }", "");
        let mut plain = layer(&plain).unwrap();
        run(plain.as_mut(), 2, 1);
        assert!(resumed.set_state(&plain.state().unwrap()).is_err());
    }

    fn labels_of(batches: &[Vec<Blob>]) -> Vec<(Vec<f32>, Vec<f32>)> {
        batches
            .iter()
            .map(|b| (b[0].data().to_vec(), b[1].data().to_vec()))
            .collect()
    }
}
