//! ImageData: tops filled from image files named in a list, with no bottoms (`data` = the next batch of
//! transformed images, `label` = their labels from the list).
//!
//! Parameters: `image_data_param { source batch_size new_height new_width is_color shuffle root_folder
//! rand_skip }` and `transform_param` (see [`crate::data::transform`]). `source` is a text file of
//! `path label` lines ([`crate::data::image_list`]: the label follows the last space, so paths may hold
//! spaces). Each image is `root_folder` followed by its listed path (joined as text, as in Caffe: end
//! `root_folder` with `/`), found from the working directory, then the prototxt's folder. Images are decoded
//! as colour (BGR, 3 channels) or, with `is_color: false`, grey (1 channel); `transform_param.force_color` and
//! `force_gray` override `is_color` (Caffe ignores them in this layer). `new_height` and `new_width`, given
//! together, resize every image first (bilinear, as OpenCV).
//!
//! `shuffle` shuffles the list with the layer's generator (derived from the net's seed) at the start and again
//! at each wrap-around, as Caffe does; `rand_skip` starts a random number of images below it into the list.
//!
//! Tops: `data` of shape `[batch_size, C, H, W]` from the first image (H and W the crop size when cropping);
//! every image must give that shape (Caffe reshapes for each batch; crema's nets keep their shapes), so give
//! `new_height`/`new_width` or `crop_size` for images of several sizes. `label` of shape `[batch_size]`.
//!
//! `sampling_param { mode: CLASS_BALANCED | SQRT }` draws each image's entry by its label instead
//! ([`crate::data::sampling`]), in the prefetch thread; the position then also holds the sampler's generator.
//!
//! Batches are made ahead on a background thread ([`crate::data::prefetch`]), `data_param.prefetch` of them
//! (default 4). An image that cannot be read or decoded fails the forward pass that would have used it, naming
//! the file. The layer's state (for solverstates) is the position of the next batch it will hand out: the
//! line, the shuffle generator as it stood before this pass's shuffle (from which the pass's order is made
//! again), and the transformer's generator.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use rand::seq::SliceRandom;
use rand::Rng as _;

use super::data::{prefetch_depth, refuse_deprecated, transformer, PrefetchingData};
use crate::data::image_list::read_list;
use crate::data::pixels::{read_image, ColorMode, Image};
use crate::data::prefetch::{Batch, BatchSource, Fill};
use crate::data::sampling::{sampler_for, ClassSampler};
use crate::data::transform::{Transformer, View};
use crate::layer::{
    required_count, required_text, resolve_path, Layer, LayerContext, LayerError, LayerResult,
};
use crate::math::Rng;

/// Images named in a list, transformed into batches.
struct ListSource {
    list: PathBuf,
    lines: Vec<(String, i32)>,
    root_folder: String,
    search_dirs: Vec<PathBuf>,
    shuffle: bool,
    /// This pass's order of the lines (empty without shuffling: the list's order).
    order: Vec<usize>,
    /// The index into the order of the next image.
    index: usize,
    /// The shuffle generator as it stood before this pass's order was drawn.
    pass_rng: Rng,
    /// The shuffle generator after it: the next pass's order draws from it.
    shuffle_rng: Rng,
    /// The transformer's draws.
    rng: Rng,
    resize: Option<(usize, usize)>,
    mode: ColorMode,
    transformer: Transformer,
    item: [usize; 3],
    batch_size: usize,
    /// With `sampling_param` other than INSTANCE: draws each image's line by class instead of reading in turn.
    sampler: Option<ClassSampler>,
}

/// Makes an ImageData layer: reads the list (shuffled when asked) and the first image for the tops' shape.
pub fn create(ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    let param = ctx.param.image_data_param.clone().unwrap_or_default();
    let source = required_text(
        param.source.as_deref(),
        "image_data_param.source",
        "the text file of `path label` lines",
    )?;
    let batch_size = required_count(
        param.batch_size(),
        "image_data_param.batch_size",
        "the number of images of a batch",
    )?;
    let resize = match (param.new_height() as usize, param.new_width() as usize) {
        (0, 0) => None,
        (h, w) if h > 0 && w > 0 => Some((h, w)),
        (h, w) => {
            return Err(LayerError::new(format!(
                "image_data_param.new_height/new_width: {h} and {w}; give both, or neither"
            )))
        }
    };
    refuse_deprecated(
        "image_data_param",
        param.scale(),
        param.mean_file.as_deref(),
        param.crop_size(),
        param.mirror(),
    )?;
    let depth = prefetch_depth(ctx)?;
    let transformer = transformer(ctx)?;
    let mode = transformer.color_mode().unwrap_or(if param.is_color() {
        ColorMode::Color
    } else {
        ColorMode::Gray
    });
    let list = ctx.resolve(source);
    let lines =
        read_list(&list).map_err(|e| LayerError::new(format!("image_data_param.source: {e}")))?;

    let mut base = ctx.rng.clone();
    let shuffle_rng = crate::math::rng(base.random(), 0);
    let rng = crate::math::rng(base.random(), 1);
    let mut source = ListSource {
        list,
        lines,
        root_folder: param.root_folder().to_owned(),
        search_dirs: ctx.search_dirs.to_vec(),
        shuffle: param.shuffle(),
        order: Vec::new(),
        index: 0,
        pass_rng: shuffle_rng.clone(),
        shuffle_rng,
        rng,
        resize,
        mode,
        transformer,
        item: [0; 3],
        batch_size,
        sampler: None,
    };
    let sampling = ctx.param.sampling_param.clone().unwrap_or_default();
    source.sampler = sampler_for(
        sampling.mode(),
        || {
            Ok(source
                .lines
                .iter()
                .map(|(_, label)| f64::from(*label))
                .collect())
        },
        crate::data::sampling::sampling_rng(&ctx.rng),
    )
    .map_err(|e| LayerError::new(format!("sampling_param: {e} ({})", source.list.display())))?;
    if source.shuffle {
        source.new_pass();
    }
    if param.rand_skip() > 0 {
        let skip = base.random_range(0..param.rand_skip()) as usize;
        if skip >= source.lines.len() {
            return Err(LayerError::new(format!(
                "image_data_param.rand_skip: skipping {skip} images, but the list names {}",
                source.lines.len()
            )));
        }
        source.index = skip;
    }
    let first = source
        .image(source.index)
        .map_err(|e| LayerError::new(format!("image_data_param.source: {e}")))?;
    source.item = source
        .transformer
        .output_shape(first.channels(), first.height(), first.width())
        .map_err(|e| {
            LayerError::new(format!(
                "{e} (image {})",
                source.path(source.index).display()
            ))
        })?;
    let (item, min_tops) = (source.item, 2);
    Ok(Box::new(PrefetchingData::new(
        "ImageData",
        source,
        depth,
        batch_size,
        item,
        min_tops,
    )?))
}

impl ListSource {
    /// Draws a new order of the lines for the next pass, remembering the generator it drew from.
    fn new_pass(&mut self) {
        self.pass_rng = self.shuffle_rng.clone();
        self.order.clear();
        self.order.extend(0..self.lines.len());
        self.order.shuffle(&mut self.shuffle_rng);
    }

    /// The list index of the `index`-th image of this pass.
    fn line(&self, index: usize) -> usize {
        self.order.get(index).copied().unwrap_or(index)
    }

    /// The file of the `index`-th image of this pass: root_folder and the listed path, resolved.
    fn path(&self, index: usize) -> PathBuf {
        self.path_of_line(self.line(index))
    }

    /// The file of list entry `line`.
    fn path_of_line(&self, line: usize) -> PathBuf {
        let listed = &self.lines[line].0;
        resolve_path(&format!("{}{listed}", self.root_folder), &self.search_dirs)
    }

    /// The `index`-th image of this pass, decoded and resized; errors name the file and the list.
    fn image(&self, index: usize) -> Result<Image, String> {
        self.image_of_line(self.line(index))
    }

    /// The image of list entry `line`, decoded and resized.
    fn image_of_line(&self, line: usize) -> Result<Image, String> {
        let path = self.path_of_line(line);
        let named = |e: String| format!("{e} (listed in {})", self.list.display());
        let image = read_image(&path, self.mode).map_err(|e| named(e.to_string()))?;
        match self.resize {
            Some((h, w)) => image
                .resize(h, w)
                .map_err(|e| named(format!("{}: {e}", path.display()))),
            None => Ok(image),
        }
    }
}

impl BatchSource for ListSource {
    fn fill(&mut self, batch: &mut Batch, stop: &AtomicBool) -> Result<Fill, String> {
        let len: usize = self.item.iter().product();
        for i in 0..self.batch_size {
            if stop.load(Ordering::Relaxed) {
                return Ok(Fill::Stopped);
            }
            let line = match &mut self.sampler {
                Some(sampler) => sampler.draw(),
                None => self.line(self.index),
            };
            let image = self.image_of_line(line)?;
            let shape = self
                .transformer
                .output_shape(image.channels(), image.height(), image.width())
                .and_then(|shape| {
                    if shape == self.item {
                        Ok(shape)
                    } else {
                        Err(format!(
                            "the image is {} × {} × {}, which transforms to {shape:?}, but the batches are {:?} \
                             (from the first image); give image_data_param.new_height and new_width, or \
                             transform_param.crop_size, for images of several sizes",
                            image.channels(),
                            image.height(),
                            image.width(),
                            self.item
                        ))
                    }
                });
            let out = &mut batch.data[i * len..(i + 1) * len];
            shape
                .and_then(|_| {
                    self.transformer
                        .transform(View::of_image(&image), &mut self.rng, out)
                })
                .map_err(|e| format!("{}: {e}", self.path_of_line(line).display()))?;
            batch.label[i] = self.lines[line].1 as f32;
            let origin = &mut batch.origins[i];
            origin.clear();
            let _ = write!(
                origin,
                "image \"{}\" (entry {} of {})",
                self.lines[line].0,
                line + 1,
                self.list.display()
            );
            if self.sampler.is_none() {
                self.index += 1;
                if self.index == self.lines.len() {
                    self.index = 0;
                    if self.shuffle {
                        self.new_pass();
                    }
                }
            }
        }
        Ok(Fill::Done)
    }

    /// The index (a little-endian u64), the shuffle generator before this pass's shuffle, the transformer's;
    /// when sampling, the sampler's generator after them.
    fn position(&self) -> Vec<u8> {
        let mut bytes = (self.index as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(&crate::math::rng_state(&self.pass_rng));
        bytes.extend_from_slice(&crate::math::rng_state(&self.rng));
        if let Some(sampler) = &self.sampler {
            bytes.extend_from_slice(&sampler.state());
        }
        bytes
    }

    fn set_position(&mut self, position: &[u8]) -> Result<(), String> {
        let damaged = || {
            "not an ImageData layer's position (damaged, or saved by another layer type)".to_owned()
        };
        let sampled = 8 + 3 * 56;
        let position = match (&mut self.sampler, position.len()) {
            (Some(sampler), n) if n == sampled => {
                if !sampler.set_state(&position[8 + 2 * 56..]) {
                    return Err(damaged());
                }
                &position[..8 + 2 * 56]
            }
            (None, n) if n == 8 + 2 * 56 => position,
            (Some(_), _) => {
                return Err(
                    "not a sampling ImageData layer's position (saved without sampling_param?)"
                        .into(),
                )
            }
            (None, _) => return Err(damaged()),
        };
        let index = u64::from_le_bytes(position[..8].try_into().map_err(|_| damaged())?);
        let index = usize::try_from(index)
            .ok()
            .filter(|&i| i < self.lines.len())
            .ok_or_else(|| {
                format!(
                    "image {index} is past the {} images of {}",
                    self.lines.len(),
                    self.list.display()
                )
            })?;
        let pass_rng = crate::math::rng_from_state(&position[8..64]).ok_or_else(damaged)?;
        let rng = crate::math::rng_from_state(&position[64..]).ok_or_else(damaged)?;
        self.shuffle_rng = pass_rng;
        if self.shuffle {
            self.new_pass();
        } else {
            self.pass_rng = self.shuffle_rng.clone();
        }
        self.index = index;
        self.rng = rng;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::Blob;
    use crate::data::pixels::Encoding;
    use crate::layers::test_support::{context, context_in};
    use crema_proto::caffe::Phase;
    use std::path::Path;

    /// A scratch folder holding images `img {i}.png` (a space in the name) of 2 × 3 pixels whose values are
    /// 10i + position, and a list of them with label 100 + i.
    fn images(name: &str, n: usize) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("crema-imagedata-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut list = String::new();
        for i in 0..n {
            let values: Vec<u8> = (0..18).map(|p| (10 * i + p) as u8).collect();
            let image = Image::new(3, 2, 3, values).unwrap();
            let file = format!("img {i}.png");
            std::fs::write(dir.join(&file), image.encode(Encoding::Png).unwrap()).unwrap();
            list.push_str(&format!("{file} {}\n", 100 + i));
        }
        std::fs::write(dir.join("list.txt"), list).unwrap();
        dir
    }

    fn param(dir: &Path, extra: &str) -> crema_proto::LayerParameter {
        let text = format!(
            r#"type: "ImageData" top: "data" top: "label"
               image_data_param {{ source: "{0}/list.txt" root_folder: "{0}/" {extra} }}"#,
            dir.display()
        );
        crema_proto::text::parse(&text, "t").unwrap()
    }

    fn run(layer: &mut dyn Layer, n: usize) -> Vec<(Vec<f32>, Vec<f32>)> {
        let (mut data, mut label) = (Blob::default(), Blob::default());
        layer.setup(&[], &mut [&mut data, &mut label]).unwrap();
        layer.reshape(&[], &mut [&mut data, &mut label]).unwrap();
        (0..n)
            .map(|_| {
                layer.forward(&[], &mut [&mut data, &mut label]).unwrap();
                (data.data().to_vec(), label.data().to_vec())
            })
            .collect()
    }

    fn labels(batches: &[(Vec<f32>, Vec<f32>)]) -> Vec<Vec<f32>> {
        batches.iter().map(|b| b.1.clone()).collect()
    }

    #[test]
    fn images_come_in_list_order_with_their_labels() {
        let dir = images("order", 3);
        let p = param(&dir, "batch_size: 2");
        let mut l = create(&mut context(&p)).unwrap();
        assert_eq!(l.type_name(), "ImageData");
        let (mut data, mut label) = (Blob::default(), Blob::default());
        l.reshape(&[], &mut [&mut data, &mut label]).unwrap();
        assert_eq!((data.shape(), label.shape()), (&[2, 3, 2, 3][..], &[2][..]));
        let batches = run(l.as_mut(), 2);
        assert_eq!(labels(&batches), [[100.0, 101.0], [102.0, 100.0]]);
        let expected: Vec<f32> = (0..18).chain(10..28).map(|v| v as f32).collect();
        assert_eq!(batches[0].0, expected);
        assert_eq!(
            batches[1].0[..18],
            (20..38).map(|v| v as f32).collect::<Vec<_>>()[..]
        );
    }

    #[test]
    fn grey_resized_and_jpeg_images() {
        let dir = images("gray", 2);
        let jpeg = Image::new(3, 8, 8, vec![128; 192])
            .unwrap()
            .encode(Encoding::Jpeg)
            .unwrap();
        std::fs::write(dir.join("big.jpg"), jpeg).unwrap();
        std::fs::write(dir.join("list.txt"), "img 0.png 0\nbig.jpg 1\n").unwrap();
        let p = param(
            &dir,
            "batch_size: 2 is_color: false new_height: 4 new_width: 6",
        );
        let batches = run(create(&mut context(&p)).unwrap().as_mut(), 1);
        let (data, label) = &batches[0];
        assert_eq!(data.len(), 2 * 4 * 6);
        assert_eq!(label, &[0.0, 1.0]);
        let first = Image::new(3, 2, 3, (0..18).collect())
            .unwrap()
            .to_gray()
            .resize(4, 6)
            .unwrap();
        let expected: Vec<f32> = first.values().iter().map(|&v| f32::from(v)).collect();
        assert_eq!(data[..24], expected[..]);
        assert!(
            data[24..].iter().all(|&v| (v - 128.0).abs() <= 2.0),
            "{data:?}"
        );
        // force_color overrides is_color.
        let p = param(
            &dir,
            "batch_size: 1 is_color: false new_height: 4 new_width: 6",
        );
        let mut p = p;
        p.transform_param = Some(crema_proto::caffe::TransformationParameter {
            force_color: Some(true),
            ..Default::default()
        });
        let batches = run(create(&mut context(&p)).unwrap().as_mut(), 1);
        assert_eq!(batches[0].0.len(), 3 * 4 * 6);
    }

    #[test]
    fn shuffle_repeats_for_a_seed_and_reshuffles_each_pass() {
        let dir = images("shuffle", 6);
        let p = param(&dir, "batch_size: 6 shuffle: true");
        let passes = |seed: u64| {
            let mut ctx = context(&p);
            ctx.rng = crate::math::rng(seed, 2);
            labels(&run(create(&mut ctx).unwrap().as_mut(), 3))
        };
        let a = passes(5);
        assert_eq!(a, passes(5));
        assert_ne!(a, passes(6));
        assert!(a[0] != a[1] || a[1] != a[2], "{a:?}");
        for pass in &a {
            let mut sorted = pass.clone();
            sorted.sort_by(f32::total_cmp);
            assert_eq!(sorted, [100.0, 101.0, 102.0, 103.0, 104.0, 105.0]);
        }
    }

    #[test]
    fn the_state_restores_the_position_order_and_generators() {
        let dir = images("state", 5);
        let p = param(&dir, "batch_size: 2 shuffle: true");
        let mut p = p;
        p.transform_param = Some(crema_proto::caffe::TransformationParameter {
            mirror: Some(true),
            crop_size: Some(1),
            ..Default::default()
        });
        let mut l = create(&mut context(&p)).unwrap();
        // 2 batches: into the second pass' first image (a reshuffle behind).
        run(l.as_mut(), 3);
        let state = l.state().unwrap();
        let expected = run(l.as_mut(), 4);
        let mut ctx = context_in(&p, Phase::Train);
        ctx.rng = crate::math::rng(1234, 0);
        let mut other = create(&mut ctx).unwrap();
        other.set_state(&state).unwrap();
        assert_eq!(run(other.as_mut(), 4), expected);
        assert!(other.set_state(&state[..20]).is_err());
        let mut far = state.clone();
        far[..8].copy_from_slice(&99u64.to_le_bytes());
        let err = other.set_state(&far).unwrap_err().0;
        assert!(err.contains("image 99 is past the 5 images"), "{err}");
    }

    #[test]
    fn errors_name_the_field_or_the_file() {
        let dir = images("errors", 2);
        let err = |extra: &str| create(&mut context(&param(&dir, extra))).err().unwrap().0;
        let e = err("batch_size: 0");
        assert!(e.starts_with("image_data_param.batch_size: "), "{e}");
        let e = err("new_height: 4");
        assert!(
            e.starts_with("image_data_param.new_height/new_width: "),
            "{e}"
        );
        let e = err("crop_size: 2");
        assert!(
            e.starts_with("image_data_param.crop_size: deprecated"),
            "{e}"
        );
        // A skip drawn below 1000000 is past the 2 images (with this seed, as with almost any).
        let e = err("rand_skip: 1000000");
        assert!(e.starts_with("image_data_param.rand_skip: "), "{e}");
        let p: crema_proto::LayerParameter =
            crema_proto::text::parse(r#"top: "data" top: "label" image_data_param { }"#, "t")
                .unwrap();
        let e = create(&mut context(&p)).err().unwrap().0;
        assert!(e.starts_with("image_data_param.source: missing"), "{e}");

        std::fs::write(dir.join("list.txt"), "img 0.png 0\nmissing.png 1\n").unwrap();
        let p = param(&dir, "batch_size: 1");
        let mut l = create(&mut context(&p)).unwrap();
        let (mut data, mut label) = (Blob::default(), Blob::default());
        l.reshape(&[], &mut [&mut data, &mut label]).unwrap();
        l.forward(&[], &mut [&mut data, &mut label]).unwrap();
        let e = l.forward(&[], &mut [&mut data, &mut label]).unwrap_err().0;
        assert!(e.contains("missing.png") && e.contains("list.txt"), "{e}");

        // A corrupt image and one of another size fail forward, naming the file.
        std::fs::write(dir.join("bad.png"), b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR").unwrap();
        std::fs::write(
            dir.join("wide.png"),
            Image::new(3, 2, 5, vec![0; 30])
                .unwrap()
                .encode(Encoding::Png)
                .unwrap(),
        )
        .unwrap();
        for (file, expected) in [("bad.png", "bad.png"), ("wide.png", "from the first image")] {
            std::fs::write(dir.join("list.txt"), format!("img 0.png 0\n{file} 1\n")).unwrap();
            let mut l = create(&mut context(&p)).unwrap();
            l.reshape(&[], &mut [&mut data, &mut label]).unwrap();
            l.forward(&[], &mut [&mut data, &mut label]).unwrap();
            let e = l.forward(&[], &mut [&mut data, &mut label]).unwrap_err().0;
            assert!(e.contains(expected) && e.contains(file), "{e}");
        }
        std::fs::write(dir.join("list.txt"), "img 0.png zero\n").unwrap();
        let e = create(&mut context(&p)).err().unwrap().0;
        assert!(
            e.starts_with("image_data_param.source: ") && e.contains("line 1"),
            "{e}"
        );
    }

    #[test]
    fn sampling_draws_entries_by_class_and_resumes() {
        // 12 entries of 3 images: class 0 nine times (image 0), class 1 twice (image 1), class 2 once (image 2).
        let dir = images("sampling", 3);
        let mut list = String::new();
        for (image, class, times) in [(0, 0, 9), (1, 1, 2), (2, 2, 1)] {
            for _ in 0..times {
                list.push_str(&format!("img {image}.png {class}\n"));
            }
        }
        std::fs::write(dir.join("list.txt"), list).unwrap();
        let p = param(
            &dir,
            "batch_size: 8 } sampling_param { mode: CLASS_BALANCED",
        );
        let batches = run(create(&mut context(&p)).unwrap().as_mut(), 150);
        let mut counts = [0u64; 3];
        for (data, labels) in &batches {
            for (image, &label) in data.chunks_exact(18).zip(labels) {
                // Each image with its own entry's label: image i holds 10i + position.
                assert_eq!(image[0], 10.0 * label);
                counts[label as usize] += 1;
            }
        }
        let chi = crate::data::sampling::chi_squared(&counts, &[1.0 / 3.0; 3]);
        assert!(chi < 13.8, "{counts:?}: chi² {chi}");

        // A layer restored from the state after 2 batches hands out what the uninterrupted one did next.
        let mut first = create(&mut context(&p)).unwrap();
        let head = run(first.as_mut(), 2);
        assert_eq!(head, batches[..2]);
        let state = first.state().unwrap();
        let mut resumed = create(&mut context(&p)).unwrap();
        let (mut data, mut label) = (Blob::default(), Blob::default());
        resumed.setup(&[], &mut [&mut data, &mut label]).unwrap();
        resumed.set_state(&state).unwrap();
        let tail = run(resumed.as_mut(), 3);
        assert_eq!(tail, batches[2..5]);
        // A plain layer's position does not restore a sampling one.
        let plain = param(&dir, "batch_size: 8");
        let mut plain = create(&mut context(&plain)).unwrap();
        run(plain.as_mut(), 1);
        assert!(resumed.set_state(&plain.state().unwrap()).is_err());
    }
}
