//! `transform_param`: what Caffe's data layers do to every image before handing it out (Caffe's
//! DataTransformer), in the same order and with the same arithmetic.
//!
//! For an image of C × H × W values (8-bit pixels or floats, channels first, colour in BGR order):
//!
//! 1. `mirror` (default false): flip left–right, chosen at random for each image, in TRAIN and in TEST alike (as
//!    Caffe does: its transformer draws the flip in both phases).
//! 2. `crop_size` (default 0, no crop): a square `crop_size × crop_size` window, at a random offset in TRAIN
//!    and at the centre (`(H - crop_size) / 2`, rounded down) in TEST.
//! 3. mean subtraction: `mean_file` (a .binaryproto mean image of the images' full C × H × W size, indexed at
//!    the pixel's position before cropping) or `mean_value` (one value for every channel, or one per channel);
//!    not both.
//! 4. `scale` (default 1): the difference is multiplied by it: `out = (pixel - mean) × scale`, in f32.
//!
//! A `scale`, `mean_value` or mean image value that is not finite (NaN, infinite) is refused, naming the field.
//!
//! The random choices are drawn from the generator given to [`Transformer::transform`], the flip first and then
//! the crop's row and column offsets, so a data layer that gives it its own generator repeats its batches for
//! a seed. `force_color` and `force_gray` choose how encoded images are decoded ([`Transformer::color_mode`]).

use std::path::{Path, PathBuf};

use crema_proto::caffe::{Phase, TransformationParameter};
use rand::Rng as _;

use super::pixels::{ColorMode, Image};
use crate::math::Rng;

/// Pixel values of one image, channels first: 8-bit, or floats (a Datum's `float_data`).
#[derive(Debug, Clone, Copy)]
pub enum Values<'a> {
    U8(&'a [u8]),
    F32(&'a [f32]),
}

impl Values<'_> {
    fn len(&self) -> usize {
        match self {
            Values::U8(v) => v.len(),
            Values::F32(v) => v.len(),
        }
    }
}

/// One image to transform: its size and its values (C × H × W, channels first).
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub values: Values<'a>,
}

impl<'a> View<'a> {
    /// A view of `values` as a `channels × height × width` image; an error when the count does not fit.
    pub fn new(
        channels: usize,
        height: usize,
        width: usize,
        values: Values<'a>,
    ) -> Result<Self, String> {
        super::pixels::check_image_len(channels, height, width, values.len())?;
        Ok(View {
            channels,
            height,
            width,
            values,
        })
    }

    /// A view of an 8-bit image.
    pub fn of_image(image: &'a Image) -> Self {
        View {
            channels: image.channels(),
            height: image.height(),
            width: image.width(),
            values: Values::U8(image.values()),
        }
    }
}

/// The random choices for one image: whether it is flipped, and where the crop starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Choice {
    pub mirror: bool,
    pub h_off: usize,
    pub w_off: usize,
}

/// The mean subtracted from every value.
#[derive(Debug, Clone, PartialEq)]
enum Mean {
    None,
    /// One value, or one per channel.
    Values(Vec<f32>),
    /// A mean image of C × H × W values.
    Image {
        path: PathBuf,
        shape: [usize; 3],
        values: Vec<f32>,
    },
}

/// A data layer's `transform_param`, ready to apply. See the module documentation.
#[derive(Debug, Clone, PartialEq)]
pub struct Transformer {
    scale: f32,
    mirror: bool,
    crop: usize,
    train: bool,
    mean: Mean,
    color: Option<ColorMode>,
}

impl Transformer {
    /// The transformer `param` describes for `phase`; `mean_file` is resolved against `search_dirs` (after
    /// the working directory) and read. Errors name the field.
    pub fn new(
        param: &TransformationParameter,
        phase: Phase,
        search_dirs: &[PathBuf],
    ) -> Result<Self, String> {
        if param.force_color() && param.force_gray() {
            return Err(
                "transform_param: force_color and force_gray cannot both be true".to_owned(),
            );
        }
        if !param.scale().is_finite() {
            return Err(format!(
                "transform_param.scale: {} is not a finite number",
                param.scale()
            ));
        }
        if let Some(at) = param.mean_value.iter().position(|v| !v.is_finite()) {
            return Err(format!(
                "transform_param.mean_value[{at}]: {} is not a finite number",
                param.mean_value[at]
            ));
        }
        let mean = match (param.mean_file.as_deref(), param.mean_value.as_slice()) {
            (Some(_), [_, ..]) => {
                return Err("transform_param: give mean_file or mean_value, not both".to_owned())
            }
            (Some(file), []) => {
                let path = crate::layer::resolve_path(file, search_dirs);
                read_mean(&path).map_err(|e| format!("transform_param.mean_file: {e}"))?
            }
            (None, []) => Mean::None,
            (None, values) => Mean::Values(values.to_vec()),
        };
        let color = if param.force_color() {
            Some(ColorMode::Color)
        } else if param.force_gray() {
            Some(ColorMode::Gray)
        } else {
            None
        };
        Ok(Transformer {
            scale: param.scale(),
            mirror: param.mirror(),
            crop: param.crop_size() as usize,
            train: phase == Phase::Train,
            mean,
            color,
        })
    }

    /// A transformer that hands images out as they are (no `transform_param`).
    pub fn identity(phase: Phase) -> Self {
        Transformer::new(&TransformationParameter::default(), phase, &[])
            .expect("the default transform_param is valid")
    }

    /// How `force_color` / `force_gray` ask for encoded images to be decoded; None when neither is set.
    pub fn color_mode(&self) -> Option<ColorMode> {
        self.color
    }

    /// The square crop's side; 0 for no crop.
    pub fn crop_size(&self) -> usize {
        self.crop
    }

    /// The shape (C, H, W) an image of `channels × height × width` becomes, after checking that it can be
    /// transformed: the crop fits, the mean image has its size, and the mean values fit its channels.
    pub fn output_shape(
        &self,
        channels: usize,
        height: usize,
        width: usize,
    ) -> Result<[usize; 3], String> {
        if channels == 0 || height == 0 || width == 0 {
            return Err(format!("an empty image ({channels} × {height} × {width})"));
        }
        if self.crop > 0 && (self.crop > height || self.crop > width) {
            return Err(format!(
                "transform_param.crop_size {} is larger than the image ({height} × {width})",
                self.crop
            ));
        }
        match &self.mean {
            Mean::Image { path, shape, .. } if *shape != [channels, height, width] => {
                return Err(format!(
                    "transform_param.mean_file {}: the mean image is {} × {} × {} but the image is \
                     {channels} × {height} × {width} (channels × height × width)",
                    path.display(),
                    shape[0],
                    shape[1],
                    shape[2]
                ));
            }
            Mean::Values(values) if values.len() != 1 && values.len() != channels => {
                return Err(format!(
                    "transform_param.mean_value: {} values for an image of {channels} channels; give one, or \
                     one per channel",
                    values.len()
                ));
            }
            _ => {}
        }
        Ok(if self.crop > 0 {
            [channels, self.crop, self.crop]
        } else {
            [channels, height, width]
        })
    }

    /// Draws the random choices for an image of `height × width`: the flip (when `mirror`), then the crop's
    /// row and column offsets (when cropping in TRAIN; the centre in TEST).
    pub fn choose(&self, height: usize, width: usize, rng: &mut Rng) -> Choice {
        let mirror = self.mirror && rng.random_range(0..2u32) == 1;
        let (mut h_off, mut w_off) = (0, 0);
        if self.crop > 0 && self.crop <= height && self.crop <= width {
            if self.train {
                h_off = rng.random_range(0..=height - self.crop);
                w_off = rng.random_range(0..=width - self.crop);
            } else {
                h_off = (height - self.crop) / 2;
                w_off = (width - self.crop) / 2;
            }
        }
        Choice {
            mirror,
            h_off,
            w_off,
        }
    }

    /// Transforms `image` into `out` (its [`Self::output_shape`] many values), drawing the random choices
    /// from `rng`.
    pub fn transform(&self, image: View, rng: &mut Rng, out: &mut [f32]) -> Result<(), String> {
        let choice = self.choose(image.height, image.width, rng);
        self.apply(image, choice, out)
    }

    /// Transforms `image` into `out` with the given choices (the crop offsets are used only when cropping).
    pub fn apply(&self, image: View, choice: Choice, out: &mut [f32]) -> Result<(), String> {
        let [c, h, w] = self.output_shape(image.channels, image.height, image.width)?;
        if out.len() != c * h * w {
            return Err(format!(
                "{} output values for a transformed image of {c} × {h} × {w}",
                out.len()
            ));
        }
        let (h_off, w_off) = if self.crop > 0 {
            (choice.h_off, choice.w_off)
        } else {
            (0, 0)
        };
        if h_off + h > image.height || w_off + w > image.width {
            return Err(format!(
                "crop offset ({h_off}, {w_off}) puts the {h} × {w} window outside the {} × {} image",
                image.height, image.width
            ));
        }
        match image.values {
            Values::U8(values) => self.fill(values, image, choice.mirror, (h_off, w_off), out),
            Values::F32(values) => self.fill(values, image, choice.mirror, (h_off, w_off), out),
        }
        Ok(())
    }

    fn fill<T: Copy + Into<f32>>(
        &self,
        values: &[T],
        image: View,
        mirror: bool,
        (h_off, w_off): (usize, usize),
        out: &mut [f32],
    ) {
        let (height, width) = (image.height, image.width);
        let (out_h, out_w) = if self.crop > 0 {
            (self.crop, self.crop)
        } else {
            (height, width)
        };
        let scale = self.scale;
        for c in 0..image.channels {
            let channel_mean = match &self.mean {
                Mean::Values(v) => v.get(c).or(v.first()).copied().unwrap_or(0.0),
                _ => 0.0,
            };
            for y in 0..out_h {
                let from = (c * height + h_off + y) * width + w_off;
                let src = &values[from..from + out_w];
                let row = &mut out[(c * out_h + y) * out_w..(c * out_h + y + 1) * out_w];
                let mean_row = match &self.mean {
                    Mean::Image { values, .. } => Some(&values[from..from + out_w]),
                    _ => None,
                };
                for x in 0..out_w {
                    let value: f32 = src[x].into();
                    let mean = mean_row.map_or(channel_mean, |m| m[x]);
                    let to = if mirror { out_w - 1 - x } else { x };
                    row[to] = (value - mean) * scale;
                }
            }
        }
    }
}

/// Reads a mean image (.binaryproto): its values and shape (C, H, W). A blob of 4 axes (N, C, H, W) gives its
/// first item, as Caffe does; fewer axes are taken as the last of (C, H, W).
fn read_mean(path: &Path) -> Result<Mean, String> {
    let array = crate::io::read_blobproto(path).map_err(|e| e.to_string())?;
    let shape = array.shape();
    if shape.len() > 4 {
        return Err(format!(
            "{}: a mean image has at most 4 axes, this blob has shape {shape:?}",
            path.display()
        ));
    }
    let mut dims = [1usize; 4];
    dims[4 - shape.len()..].copy_from_slice(shape);
    let [_, c, h, w] = dims;
    let values = array.to_f32_vec();
    // No overflow: a blob of no values may claim any other sizes.
    let count = c
        .checked_mul(h)
        .and_then(|n| n.checked_mul(w))
        .unwrap_or(usize::MAX);
    if count == 0 || values.len() < count {
        return Err(format!(
            "{}: the mean image has shape {shape:?}: no values",
            path.display()
        ));
    }
    let values = &values[..count];
    if let Some(at) = values.iter().position(|v| !v.is_finite()) {
        return Err(format!(
            "{}: the mean image holds {} at index {at}",
            path.display(),
            values[at]
        ));
    }
    Ok(Mean::Image {
        path: path.to_path_buf(),
        shape: [c, h, w],
        values: values.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{write_blobproto, Array};

    fn transformer(text: &str, phase: Phase) -> Result<Transformer, String> {
        let param: TransformationParameter = crema_proto::text::parse(text, "t").unwrap();
        Transformer::new(&param, phase, &[])
    }

    /// 2 channels of 3 × 4: channel c, row y, column x holds 100c + 10y + x.
    fn image() -> Vec<u8> {
        (0..2)
            .flat_map(|c| {
                (0..3).flat_map(move |y| (0..4).map(move |x| (100 * c + 10 * y + x) as u8))
            })
            .collect()
    }

    fn run(t: &Transformer, values: &[u8], shape: [usize; 3], choice: Choice) -> Vec<f32> {
        let view = View::new(shape[0], shape[1], shape[2], Values::U8(values)).unwrap();
        let [c, h, w] = t.output_shape(shape[0], shape[1], shape[2]).unwrap();
        let mut out = vec![f32::NAN; c * h * w];
        t.apply(view, choice, &mut out).unwrap();
        out
    }

    #[test]
    fn no_parameters_copy_the_values() {
        let t = Transformer::identity(Phase::Train);
        let values = image();
        let out = run(&t, &values, [2, 3, 4], Choice::default());
        assert_eq!(
            out,
            values.iter().map(|&v| f32::from(v)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn scale_and_mean_values() {
        let t = transformer("scale: 0.5 mean_value: 10", Phase::Train).unwrap();
        let out = run(&t, &image(), [2, 3, 4], Choice::default());
        assert_eq!(out[..4], [-5.0, -4.5, -4.0, -3.5]);
        assert_eq!(out[12], (100.0 - 10.0) * 0.5);
        let t = transformer("mean_value: 1 mean_value: 100", Phase::Test).unwrap();
        let out = run(&t, &image(), [2, 3, 4], Choice::default());
        assert_eq!(out[..2], [-1.0, 0.0]);
        assert_eq!(out[12..14], [0.0, 1.0]);
        assert_eq!(out[23], 23.0);
        // Three values for two channels.
        let t = transformer("mean_value: 1 mean_value: 2 mean_value: 3", Phase::Test).unwrap();
        let err = t.output_shape(2, 3, 4).unwrap_err();
        assert!(
            err.starts_with("transform_param.mean_value: 3 values"),
            "{err}"
        );
    }

    #[test]
    fn mirror_flips_each_row() {
        let t = transformer("mirror: true", Phase::Test).unwrap();
        let choice = Choice {
            mirror: true,
            ..Choice::default()
        };
        let out = run(&t, &image(), [2, 3, 4], choice);
        assert_eq!(out[..8], [3.0, 2.0, 1.0, 0.0, 13.0, 12.0, 11.0, 10.0]);
        assert_eq!(out[12..16], [103.0, 102.0, 101.0, 100.0]);
        // About half the images are flipped, in both phases.
        for phase in [Phase::Train, Phase::Test] {
            let t = transformer("mirror: true", phase).unwrap();
            let mut rng = crate::math::rng(1, 0);
            let flips = (0..1000)
                .filter(|_| t.choose(3, 4, &mut rng).mirror)
                .count();
            assert!((400..600).contains(&flips), "{flips}");
        }
        let t = Transformer::identity(Phase::Train);
        let mut rng = crate::math::rng(1, 0);
        assert!((0..100).all(|_| !t.choose(3, 4, &mut rng).mirror));
    }

    #[test]
    fn crop_is_central_in_test_and_random_in_train() {
        let t = transformer("crop_size: 2", Phase::Test).unwrap();
        assert_eq!(t.output_shape(2, 3, 4).unwrap(), [2, 2, 2]);
        let mut rng = crate::math::rng(1, 0);
        let choice = t.choose(3, 4, &mut rng);
        assert_eq!((choice.h_off, choice.w_off), (0, 1));
        let out = run(&t, &image(), [2, 3, 4], choice);
        assert_eq!(out, [1.0, 2.0, 11.0, 12.0, 101.0, 102.0, 111.0, 112.0]);

        let t = transformer("crop_size: 2", Phase::Train).unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let c = t.choose(3, 4, &mut rng);
            seen.insert((c.h_off, c.w_off));
        }
        // Every offset of a 2 × 2 window in 3 × 4: rows 0..=1, columns 0..=2.
        assert_eq!(seen.len(), 6, "{seen:?}");
        let choice = Choice {
            mirror: true,
            h_off: 1,
            w_off: 2,
        };
        let out = run(&t, &image(), [2, 3, 4], choice);
        assert_eq!(out, [13.0, 12.0, 23.0, 22.0, 113.0, 112.0, 123.0, 122.0]);

        let err = t.output_shape(2, 1, 4).unwrap_err();
        assert!(
            err.contains("crop_size 2 is larger than the image (1 × 4)"),
            "{err}"
        );
    }

    #[test]
    fn mean_file_is_indexed_before_the_crop() {
        let dir = std::env::temp_dir().join(format!("crema-transform-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("mean.binaryproto");
        // Mean (c, y, x) = c + 0.5y + 0.25x, as Caffe's compute_image_mean writes it: 1 × C × H × W.
        let mean: Vec<f32> = (0..2)
            .flat_map(|c| {
                (0..3).flat_map(move |y| {
                    (0..4).map(move |x| c as f32 + 0.5 * y as f32 + 0.25 * x as f32)
                })
            })
            .collect();
        write_blobproto(
            &path,
            &Array::from_f32(vec![1, 2, 3, 4], mean.clone()).unwrap(),
        )
        .unwrap();
        let text = format!("crop_size: 2 scale: 2 mean_file: \"{}\"", path.display());
        let t = transformer(&text, Phase::Test).unwrap();
        let choice = Choice {
            mirror: false,
            h_off: 1,
            w_off: 1,
        };
        let out = run(&t, &image(), [2, 3, 4], choice);
        // Pixel (0, 1, 1) = 11, mean 0 + 0.5 + 0.25: (11 - 0.75) · 2.
        assert_eq!(out[0], 20.5);
        // Pixel (1, 2, 2) = 122, mean 1 + 1 + 0.5.
        assert_eq!(out[7], (122.0 - 2.5) * 2.0);
        let err = t.output_shape(3, 3, 4).unwrap_err();
        assert!(
            err.contains("the mean image is 2 × 3 × 4 but the image is 3 × 3 × 4"),
            "{err}"
        );

        let text = format!("mean_file: \"{}\" mean_value: 3", path.display());
        assert!(transformer(&text, Phase::Test)
            .unwrap_err()
            .contains("not both"));
        // A mean blob of no values whose other sizes multiply past usize.
        let empty = dir.join("empty.binaryproto");
        let blob = crema_proto::BlobProto {
            shape: Some(crema_proto::caffe::BlobShape {
                dim: vec![0, 1 << 40, 1 << 40, 1 << 40],
            }),
            ..Default::default()
        };
        crema_proto::files::write_binary(&empty, &blob).unwrap();
        let err = transformer(&format!("mean_file: {empty:?}"), Phase::Test).unwrap_err();
        assert!(
            err.starts_with("transform_param.mean_file: ") && err.contains("empty.binaryproto"),
            "{err}"
        );
        let err =
            transformer("mean_file: \"/nonexistent/m.binaryproto\"", Phase::Test).unwrap_err();
        assert!(
            err.starts_with("transform_param.mean_file: ") && err.contains("/nonexistent/m"),
            "{err}"
        );
    }

    #[test]
    fn non_finite_parameters_are_refused() {
        for (text, field) in [
            ("scale: nan", "transform_param.scale: NaN"),
            ("scale: inf", "transform_param.scale: inf"),
            (
                "mean_value: 1 mean_value: -inf",
                "transform_param.mean_value[1]: -inf",
            ),
        ] {
            let err = transformer(text, Phase::Train).unwrap_err();
            assert!(err.starts_with(field), "{text}: {err}");
        }
        let dir = std::env::temp_dir().join(format!("crema-transform-nan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("mean.binaryproto");
        let mean = Array::from_f32(vec![1, 1, 1, 2], vec![0.5, f32::NAN]).unwrap();
        write_blobproto(&path, &mean).unwrap();
        let err = transformer(&format!("mean_file: {path:?}"), Phase::Train).unwrap_err();
        assert!(
            err.starts_with("transform_param.mean_file: ")
                && err.contains("mean.binaryproto")
                && err.contains("NaN at index 1"),
            "{err}"
        );
    }

    #[test]
    fn float_values_and_forced_colour() {
        let t = transformer("scale: 2 mean_value: 0.5 force_gray: true", Phase::Test).unwrap();
        assert_eq!(t.color_mode(), Some(ColorMode::Gray));
        let values = [1.0f32, 2.0, 3.0, 4.0];
        let view = View::new(1, 2, 2, Values::F32(&values)).unwrap();
        let mut out = [0.0; 4];
        t.apply(view, Choice::default(), &mut out).unwrap();
        assert_eq!(out, [1.0, 3.0, 5.0, 7.0]);
        assert!(View::new(1, 2, 3, Values::F32(&values)).is_err());
        let err = transformer("force_gray: true force_color: true", Phase::Test).unwrap_err();
        assert!(err.contains("force_color and force_gray"), "{err}");
        assert_eq!(
            transformer("force_color: true", Phase::Test)
                .unwrap()
                .color_mode(),
            Some(ColorMode::Color)
        );
        assert_eq!(Transformer::identity(Phase::Test).color_mode(), None);
        // Output of the wrong size.
        assert!(t.apply(view, Choice::default(), &mut [0.0; 3]).is_err());
    }
}
