//! SPP, spatial pyramid pooling (He et al.): the bottom pooled over grids of 1, 2, 4, ... bins per axis, each
//! grid's values flattened per image and the grids joined, so that inputs of any size give one length.
//!
//! Parameters: `spp_param { pyramid_height (required, at least 1) pool (MAX | AVE | STOCHASTIC) }`. The
//! bottom is N×C×H×W.
//!
//! Caffe's SPPLayer, kept exactly: level `i` (from 0) has `bins = 2^i` per axis and is a Pooling layer with,
//! per axis, `kernel = ceil(H / bins)`, `pad = (kernel·bins − H + 1) / 2` and `stride = kernel` (Pooling's own
//! rules then decide the output size and the windows, padding counted by AVE). With `pyramid_height: 1` the
//! top is that one Pooling layer's top, N×C×1×1 (global pooling); with more levels, each level's N×C×b×b is
//! flattened to N×(C·b·b) and the levels are concatenated along axis 1 in order, N × C·Σb². The levels are
//! made again when the bottom's plane changes size. Where a level's padding is not smaller than its kernel
//! (a grid finer than the plane, such as 4 bins over 5 or 3 rows), Pooling refuses it, as in Caffe; the error
//! names the level.
//!
//! The levels are crema's Pooling layers, made from a constructed `pooling_param` as Caffe makes them;
//! flattening and joining are copies, and backward sums the levels' gradients (Caffe's Split). Caffe builds its
//! levels from a LayerParameter without a phase, so in Caffe they run as in TRAIN; that changes only
//! STOCHASTIC, which Caffe runs on the GPU only. crema runs the levels in the net's phase (STOCHASTIC draws in
//! TRAIN, takes the weighted average in TEST, as a Pooling layer does), each level with its own generator,
//! saved in solverstates.

use crema_proto::caffe::pooling_parameter::PoolMethod;
use crema_proto::caffe::{spp_parameter, Phase, PoolingParameter};
use crema_proto::LayerParameter;
use rand::SeedableRng as _;

use crate::blob::Blob;
use crate::layer::{required_count, Arity, Layer, LayerContext, LayerError, LayerResult};
use crate::layers::pooling;
use crate::math::{self, Rng};
use crate::memory;

/// The most levels: level 31 already has 2^31 bins per axis.
const MAX_PYRAMID_HEIGHT: usize = 32;

/// The SPP layer.
pub struct Spp {
    name: String,
    pyramid_height: usize,
    method: PoolMethod,
    phase: Phase,
    /// The plane (height, width) the levels were made for; None before the first reshape.
    plane: Option<(usize, usize)>,
    /// One Pooling layer per level, made at reshape.
    levels: Vec<Box<dyn Layer>>,
    /// Each level's generator, as it stood when the level was last made (STOCHASTIC draws from it).
    rngs: Vec<Rng>,
    /// With more than one level: each level's top, N×C×b×b.
    outputs: Vec<Blob>,
    /// With more than one level: the bottom's gradient summed over the levels before the last.
    gradient: Vec<f32>,
}

/// Makes an SPP layer.
pub fn create(ctx: &mut LayerContext) -> LayerResult<Box<dyn Layer>> {
    let param = ctx.param.spp_param.unwrap_or_default();
    let pyramid_height = required_count(
        param.pyramid_height.unwrap_or(0),
        "spp_param.pyramid_height",
        "the number of pyramid levels (1 for global pooling)",
    )?;
    if pyramid_height > MAX_PYRAMID_HEIGHT {
        return Err(LayerError::new(format!(
            "spp_param.pyramid_height: {pyramid_height} levels; level i pools 2^i bins per axis, at most \
             {MAX_PYRAMID_HEIGHT} levels"
        )));
    }
    let raw = param.pool.unwrap_or(spp_parameter::PoolMethod::Max as i32);
    let method = match spp_parameter::PoolMethod::try_from(raw) {
        Ok(spp_parameter::PoolMethod::Max) => PoolMethod::Max,
        Ok(spp_parameter::PoolMethod::Ave) => PoolMethod::Ave,
        Ok(spp_parameter::PoolMethod::Stochastic) => PoolMethod::Stochastic,
        Err(_) => {
            return Err(LayerError::new(format!(
                "spp_param.pool: {raw} is not a pooling method (MAX, AVE or STOCHASTIC)"
            )))
        }
    };
    // Each level draws from a generator of its own, seeded from the layer's.
    let rngs = (0..pyramid_height)
        .map(|_| Rng::from_rng(&mut ctx.rng))
        .collect();
    Ok(Box::new(Spp {
        name: ctx.param.name().to_string(),
        pyramid_height,
        method,
        phase: ctx.phase,
        plane: None,
        levels: Vec::new(),
        rngs,
        outputs: Vec::new(),
        gradient: Vec::new(),
    }))
}

/// Kernel, pad and stride along one axis of `input` values for `bins` bins (Caffe's GetPoolingParam).
fn level_geometry(input: usize, bins: usize) -> (usize, usize, usize) {
    let kernel = input.div_ceil(bins);
    let remainder = kernel * bins - input;
    let pad = remainder.div_ceil(2);
    (kernel, pad, kernel)
}

impl Spp {
    /// Whether the levels draw at random (and keep generators a resumed run needs).
    fn draws(&self) -> bool {
        self.method == PoolMethod::Stochastic && self.phase == Phase::Train
    }

    /// Makes the Pooling layer of every level for a plane of `height × width`, each continuing its level's
    /// generator.
    fn make_levels(&mut self, height: usize, width: usize) -> LayerResult {
        for (rng, level) in self.rngs.iter_mut().zip(&self.levels) {
            if let Some(state) = level.state() {
                *rng = math::rng_from_state(&state).expect("a Pooling layer's own state");
            }
        }
        let mut levels = Vec::with_capacity(self.pyramid_height);
        for (i, rng) in self.rngs.iter().enumerate() {
            let bins = 1usize << i;
            let (kh, ph, sh) = level_geometry(height, bins);
            let (kw, pw, sw) = level_geometry(width, bins);
            let as_u32 = |v: usize| u32::try_from(v).ok();
            let mut pooling_param = PoolingParameter {
                kernel_h: as_u32(kh),
                kernel_w: as_u32(kw),
                stride_h: as_u32(sh),
                stride_w: as_u32(sw),
                pad_h: as_u32(ph),
                pad_w: as_u32(pw),
                ..Default::default()
            };
            pooling_param.set_pool(self.method);
            let param = LayerParameter {
                name: Some(format!("{} level {i}", self.name)),
                r#type: Some("Pooling".into()),
                pooling_param: Some(pooling_param),
                ..Default::default()
            };
            let mut ctx = LayerContext {
                param: &param,
                phase: self.phase,
                search_dirs: &[],
                rng: rng.clone(),
            };
            let level = pooling::create(&mut ctx).map_err(|e| {
                LayerError::new(format!(
                    "spp_param: level {i} ({bins} × {bins} bins) over the {height} × {width} plane takes kernel \
                     {kh} × {kw}, pad {ph} × {pw} and stride {sh} × {sw}, which Pooling refuses ({}); use a \
                     lower pyramid_height or a larger input",
                    e.0
                ))
            })?;
            levels.push(level);
        }
        self.levels = levels;
        self.plane = Some((height, width));
        Ok(())
    }

    /// Reshape of level `i` on `bottom`, writing `top`; setup first when the level is `fresh`ly made.
    fn shape_level(&mut self, i: usize, fresh: bool, bottom: &Blob, top: &mut Blob) -> LayerResult {
        let level = &mut self.levels[i];
        let setup = if fresh {
            level.setup(&[bottom], &mut [&mut *top])
        } else {
            Ok(())
        };
        setup
            .and_then(|()| level.reshape(&[bottom], &mut [top]))
            .map_err(|e| LayerError::new(format!("spp_param: level {i}: {}", e.0)))
    }
}

impl Layer for Spp {
    fn type_name(&self) -> &'static str {
        "SPP"
    }

    fn bottom_arity(&self) -> Arity {
        Arity::exactly(1)
    }

    fn top_arity(&self) -> Arity {
        Arity::exactly(1)
    }

    fn reshape(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        let x = bottom[0];
        if x.num_axes() != 4 {
            return Err(LayerError::new(format!(
                "the bottom is {}; SPP needs 4 axes (num, channels, height, width)",
                x.shape_string()
            )));
        }
        let (num, height, width) = (x.shape()[0], x.shape()[2], x.shape()[3]);
        if height == 0 || width == 0 {
            return Err(LayerError::new(format!(
                "the bottom is {}; SPP needs a height and a width of at least 1",
                x.shape_string()
            )));
        }
        let fresh = self.plane != Some((height, width));
        if fresh {
            self.make_levels(height, width)?;
        }
        if self.pyramid_height == 1 {
            return self.shape_level(0, fresh, x, top[0]);
        }
        self.outputs.resize_with(self.pyramid_height, Blob::default);
        let mut outputs = std::mem::take(&mut self.outputs);
        let shaped = (0..self.pyramid_height)
            .try_for_each(|i| self.shape_level(i, fresh, x, &mut outputs[i]));
        self.outputs = outputs;
        shaped?;
        // Flatten each level to N × (C·b·b) and join along axis 1.
        let joined: usize = self.outputs.iter().map(|o| o.count_from(1)).sum();
        top[0].reshape(&[num, joined])?;
        memory::resize(&mut self.gradient, x.count(), 0.0, || {
            "the SPP layer's bottom gradient".into()
        })?;
        Ok(())
    }

    fn forward(&mut self, bottom: &[&Blob], top: &mut [&mut Blob]) -> LayerResult {
        if self.pyramid_height == 1 {
            return self.levels[0].forward(bottom, top);
        }
        for (level, output) in self.levels.iter_mut().zip(&mut self.outputs) {
            level.forward(bottom, &mut [output])?;
        }
        let joined = top[0].count_from(1);
        if joined == 0 {
            return Ok(());
        }
        let y = top[0].data_mut();
        let mut offset = 0;
        for output in &self.outputs {
            let len = output.count_from(1);
            if len == 0 {
                continue;
            }
            for (row, part) in y
                .chunks_exact_mut(joined)
                .zip(output.data().chunks_exact(len))
            {
                row[offset..offset + len].copy_from_slice(part);
            }
            offset += len;
        }
        Ok(())
    }

    fn backward(
        &mut self,
        top: &[&Blob],
        propagate_down: &[bool],
        bottom: &mut [&mut Blob],
    ) -> LayerResult {
        if !propagate_down[0] {
            return Ok(());
        }
        if self.pyramid_height == 1 {
            return self.levels[0].backward(top, propagate_down, bottom);
        }
        // Each level's part of the top's gradient, unflattened.
        let joined = top[0].count_from(1);
        let mut offset = 0;
        for output in &mut self.outputs {
            let len = output.count_from(1);
            if len == 0 || joined == 0 {
                output.diff_mut().fill(0.0);
                continue;
            }
            let dy = top[0].diff();
            for (part, row) in output
                .diff_mut()
                .chunks_exact_mut(len)
                .zip(dy.chunks_exact(joined))
            {
                part.copy_from_slice(&row[offset..offset + len]);
            }
            offset += len;
        }
        // Every level writes the bottom's gradient: sum those of the levels before the last, let the last
        // write it, then add the sum.
        self.gradient.fill(0.0);
        let last = self.pyramid_height - 1;
        for i in 0..last {
            self.levels[i].backward(&[&self.outputs[i]], &[true], bottom)?;
            math::axpy(1.0, bottom[0].diff(), &mut self.gradient);
        }
        self.levels[last].backward(&[&self.outputs[last]], &[true], bottom)?;
        math::axpy(1.0, &self.gradient, bottom[0].diff_mut());
        Ok(())
    }

    fn state(&self) -> Option<Vec<u8>> {
        if !self.draws() {
            return None;
        }
        let mut bytes = Vec::new();
        for (i, rng) in self.rngs.iter().enumerate() {
            match self.levels.get(i).and_then(|level| level.state()) {
                Some(state) => bytes.extend_from_slice(&state),
                None => bytes.extend_from_slice(&math::rng_state(rng)),
            }
        }
        Some(bytes)
    }

    fn set_state(&mut self, state: &[u8]) -> LayerResult {
        let damaged =
            || LayerError::new("the saved random generator states of the SPP levels are damaged");
        if !self.draws() || state.is_empty() || !state.len().is_multiple_of(self.pyramid_height) {
            return Err(damaged());
        }
        let each = state.len() / self.pyramid_height;
        let rngs = state
            .chunks_exact(each)
            .map(math::rng_from_state)
            .collect::<Option<Vec<Rng>>>()
            .ok_or_else(damaged)?;
        for (level, chunk) in self.levels.iter_mut().zip(state.chunks_exact(each)) {
            level.set_state(chunk)?;
        }
        self.rngs = rngs;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::test_support::context_in;
    use crate::testing::{uniform_blob, GradientChecker};

    fn make(params: &str, phase: Phase) -> Result<Box<dyn Layer>, String> {
        let text = format!("name: \"spp\" type: \"SPP\" spp_param {{ {params} }}");
        let param: LayerParameter = crema_proto::text::parse(&text, "t").unwrap();
        create(&mut context_in(&param, phase)).map_err(|e| e.0)
    }

    fn forward(layer: &mut dyn Layer, x: &Blob) -> Result<Blob, String> {
        let mut top = Blob::default();
        layer.setup(&[x], &mut [&mut top]).map_err(|e| e.0)?;
        layer.reshape(&[x], &mut [&mut top]).map_err(|e| e.0)?;
        top.data_mut().fill(f32::NAN);
        layer.forward(&[x], &mut [&mut top]).map_err(|e| e.0)?;
        Ok(top)
    }

    fn run(params: &str, x: &Blob) -> Blob {
        forward(make(params, Phase::Test).unwrap().as_mut(), x).unwrap()
    }

    /// Values `first, first + 1, ...` in a blob of `shape`.
    fn counting(shape: &[usize], first: f32) -> Blob {
        let count: usize = shape.iter().product();
        Blob::from_data(shape, (0..count).map(|i| first + i as f32).collect()).unwrap()
    }

    #[test]
    fn geometry_is_caffes() {
        // (kernel, pad, stride) for an axis of `input` and `bins` bins.
        assert_eq!(level_geometry(13, 1), (13, 0, 13));
        assert_eq!(level_geometry(13, 2), (7, 1, 7)); // 14 − 13 = 1 to pad: (1 + 1) / 2 = 1
        assert_eq!(level_geometry(13, 4), (4, 2, 4)); // 16 − 13 = 3: 2
        assert_eq!(level_geometry(6, 4), (2, 1, 2)); // 8 − 6 = 2: 1
        assert_eq!(level_geometry(8, 4), (2, 0, 2));
    }

    #[test]
    fn levels_are_flattened_per_image_and_joined_in_order() {
        // Two images of two 4×4 channels, values 0..63. Level 0: each channel's maximum; level 1: the maxima
        // of the four 2×2 quarters.
        let x = counting(&[2, 2, 4, 4], 0.0);
        let top = run("pyramid_height: 2 pool: MAX", &x);
        assert_eq!(top.shape(), [2, 2 + 2 * 4]);
        #[rustfmt::skip]
        assert_eq!(top.data(), [
            15.0, 31.0, 5.0, 7.0, 13.0, 15.0, 21.0, 23.0, 29.0, 31.0,
            47.0, 63.0, 37.0, 39.0, 45.0, 47.0, 53.0, 55.0, 61.0, 63.0,
        ]);
    }

    #[test]
    fn padded_levels_average_as_pooling_does() {
        // 3×3 values 1..9. Level 1 (2 bins): kernel 2, pad (4 − 3 + 1) / 2 = 1, stride 2: windows over rows
        // and columns {−1, 0} and {1, 2}, AVE dividing by 4 (padding counted): 1/4, (2+3)/4, (4+7)/4,
        // (5+6+8+9)/4. Level 0: the mean, 5.
        let x = counting(&[1, 1, 3, 3], 1.0);
        let top = run("pyramid_height: 2 pool: AVE", &x);
        assert_eq!(top.shape(), [1, 5]);
        assert_eq!(top.data(), [5.0, 0.25, 1.25, 2.75, 7.0]);
        let top = run("pyramid_height: 2 pool: MAX", &x);
        assert_eq!(top.data(), [9.0, 1.0, 3.0, 7.0, 9.0]);
    }

    #[test]
    fn one_level_is_global_pooling_with_a_4d_top() {
        let x = counting(&[2, 3, 2, 5], 0.0);
        let top = run("pyramid_height: 1", &x);
        assert_eq!(top.shape(), [2, 3, 1, 1]);
        assert_eq!(top.data(), [9.0, 19.0, 29.0, 39.0, 49.0, 59.0]);
        let top = run("pyramid_height: 1 pool: AVE", &x);
        assert_eq!(top.data(), [4.5, 14.5, 24.5, 34.5, 44.5, 54.5]);
    }

    /// What Pooling layers with `params` make of `x`, flattened per image and joined.
    fn pooled_by_hand(levels: &[&str], x: &Blob) -> Vec<f32> {
        let outputs: Vec<Blob> = levels
            .iter()
            .map(|params| {
                let text = format!("name: \"p\" type: \"Pooling\" pooling_param {{ {params} }}");
                let param: LayerParameter = crema_proto::text::parse(&text, "t").unwrap();
                let mut layer = pooling::create(&mut context_in(&param, Phase::Test)).unwrap();
                forward(layer.as_mut(), x).unwrap()
            })
            .collect();
        let num = x.shape()[0];
        let mut joined = Vec::new();
        for n in 0..num {
            for output in &outputs {
                let len = output.count_from(1);
                joined.extend_from_slice(&output.data()[n * len..(n + 1) * len]);
            }
        }
        joined
    }

    #[test]
    fn three_levels_are_the_pooling_layers_caffe_would_make() {
        // 8 × 6: level 0 kernel 8 × 6; level 1 kernel 4 × 3; level 2 kernel 2 × 2 with pad 0 × 1 (8 − 6 = 2
        // columns to pad: 1 each side).
        let x = uniform_blob(&[2, 3, 8, 6], -1.0, 1.0, 3);
        for pool in ["MAX", "AVE"] {
            let top = run(&format!("pyramid_height: 3 pool: {pool}"), &x);
            assert_eq!(top.shape(), [2, 3 * (1 + 4 + 16)]);
            let expected = pooled_by_hand(
                &[
                    &format!("pool: {pool} kernel_h: 8 kernel_w: 6 stride_h: 8 stride_w: 6"),
                    &format!("pool: {pool} kernel_h: 4 kernel_w: 3 stride_h: 4 stride_w: 3"),
                    &format!("pool: {pool} kernel_size: 2 stride: 2 pad_h: 0 pad_w: 1"),
                ],
                &x,
            );
            assert_eq!(top.data(), expected, "{pool}");
        }
    }

    #[test]
    fn levels_are_made_again_when_the_plane_changes() {
        let mut layer = make("pyramid_height: 2 pool: AVE", Phase::Test).unwrap();
        let first = counting(&[1, 1, 4, 4], 0.0);
        forward(layer.as_mut(), &first).unwrap();
        let x = counting(&[1, 1, 3, 3], 1.0);
        let mut top = Blob::default();
        layer.reshape(&[&x], &mut [&mut top]).unwrap();
        layer.forward(&[&x], &mut [&mut top]).unwrap();
        assert_eq!(top.data(), [5.0, 0.25, 1.25, 2.75, 7.0]);
    }

    #[test]
    fn gradients_match_finite_differences() {
        for (params, shape) in [
            ("pyramid_height: 2 pool: MAX", [2, 2, 5, 6]),
            ("pyramid_height: 3 pool: MAX", [1, 2, 6, 8]),
            ("pyramid_height: 3 pool: AVE", [2, 1, 6, 8]),
            ("pyramid_height: 2 pool: AVE", [1, 2, 3, 3]),
            ("pyramid_height: 1 pool: AVE", [2, 2, 3, 4]),
            ("pyramid_height: 1 pool: MAX", [2, 2, 3, 4]),
            ("pyramid_height: 2 pool: STOCHASTIC", [1, 2, 5, 6]),
        ] {
            let mut layer = make(params, Phase::Test).unwrap();
            // Values apart enough that the finite-difference step never changes which one is the maximum,
            // positive for STOCHASTIC.
            let mut x = Blob::new(&shape).unwrap();
            let count = x.count();
            for (i, v) in x.data_mut().iter_mut().enumerate() {
                *v = ((i * 37) % count + 1) as f32 * 0.05;
            }
            GradientChecker::default()
                .check(layer.as_mut(), &mut [x], 1, &[0])
                .unwrap_or_else(|e| panic!("{params}: {e}"));
        }
    }

    #[test]
    fn stochastic_levels_keep_their_generators_in_the_state() {
        let x = uniform_blob(&[1, 2, 4, 4], 0.1, 1.0, 5);
        let mut layer = make("pyramid_height: 3 pool: STOCHASTIC", Phase::Train).unwrap();
        forward(layer.as_mut(), &x).unwrap();
        let state = layer.state().expect("STOCHASTIC in TRAIN draws");
        assert_eq!(state.len(), 3 * math::rng_state(&math::rng(0, 0)).len());
        let draw = |layer: &mut dyn Layer| {
            let mut top = Blob::default();
            layer.reshape(&[&x], &mut [&mut top]).unwrap();
            (0..5)
                .flat_map(|_| {
                    layer.forward(&[&x], &mut [&mut top]).unwrap();
                    top.data().to_vec()
                })
                .collect::<Vec<f32>>()
        };
        let expected = draw(layer.as_mut());
        // Another layer, its generators elsewhere (three passes on), then given the state.
        let mut resumed = make("pyramid_height: 3 pool: STOCHASTIC", Phase::Train).unwrap();
        forward(resumed.as_mut(), &x).unwrap();
        draw(resumed.as_mut());
        assert_ne!(resumed.state().unwrap(), state);
        resumed.set_state(&state).unwrap();
        assert_eq!(draw(resumed.as_mut()), expected);
        assert!(resumed.set_state(&state[..10]).is_err());
        assert!(make("pyramid_height: 3 pool: MAX", Phase::Train)
            .unwrap()
            .state()
            .is_none());
    }

    #[test]
    fn a_net_makes_it_by_its_type_name() {
        let net = crate::testing::net_from_text(
            r#"layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 dim: 8 dim: 6 } } }
               layer { name: "spp" type: "SPP" bottom: "x" top: "y" spp_param { pyramid_height: 3 } }"#,
            Phase::Train,
            &[],
        )
        .unwrap();
        assert_eq!(net.blob("y").unwrap().shape(), [2, 3 * 21]);
    }

    #[test]
    fn bad_parameters_and_shapes_are_named() {
        let err = make("pool: MAX", Phase::Test).err().unwrap();
        assert!(
            err.contains("spp_param.pyramid_height: missing or 0"),
            "{err}"
        );
        let err = make("pyramid_height: 0", Phase::Test).err().unwrap();
        assert!(
            err.contains("spp_param.pyramid_height: missing or 0"),
            "{err}"
        );
        let err = make("pyramid_height: 40", Phase::Test).err().unwrap();
        assert!(err.contains("40 levels"), "{err}");
        let mut layer = make("pyramid_height: 3", Phase::Test).unwrap();
        // 4 bins over 5 rows: kernel 2, pad (8 − 5 + 1) / 2 = 2, not smaller than the kernel.
        let err = forward(layer.as_mut(), &Blob::new(&[1, 1, 5, 8]).unwrap()).unwrap_err();
        assert!(
            err.contains("level 2 (4 × 4 bins) over the 5 × 8 plane")
                && err.contains("kernel 2 × 2, pad 2 × 0")
                && err.contains("smaller than the kernel"),
            "{err}"
        );
        let err = forward(layer.as_mut(), &Blob::new(&[2, 3, 8]).unwrap()).unwrap_err();
        assert!(err.contains("SPP needs 4 axes"), "{err}");
        let err = forward(layer.as_mut(), &Blob::new(&[2, 3, 0, 8]).unwrap()).unwrap_err();
        assert!(err.contains("height and a width of at least 1"), "{err}");
    }
}
