//! A convolution over a batch of images on the CPU, forward and backward, for Convolution and Deconvolution
//! layers: the batch is cut into chunks of images, and each chunk becomes a few matrix products per group on
//! its patch matrix ([`im2col`]), `K × (c·S)` for `c` images of `S` output positions and `K` values per patch.
//!
//! Two ways to run a batch, chosen from the shapes alone when the [`Convolver`] is made:
//! - small images (LeNet, CIFAR): chunks of a few images whose patches fit in a core's L2 cache run side by
//!   side, one per thread, each with its own workspace and its own weight-gradient partial. The patches are
//!   gathered again in backward (cheaper than keeping them: they are in cache, a whole batch of them is not),
//!   and the partials are summed in chunk order, so results do not depend on the number of threads;
//! - large images (CaffeNet, FCN): one chunk at a time, every kernel and product split across threads; a chunk
//!   holds enough images for products about 1024 positions wide (one image of a large map). Strided
//!   convolutions keep their patches from forward, and small weight gradients over many positions are summed
//!   in parts side by side.
//!
//! "Image side" is the convolution's input (a Convolution's bottom, a Deconvolution's top), "channel side" its
//! output, `outputs × S` per image. Forward of a convolution gathers image side into channel side; forward of
//! a deconvolution scatters channel side into image side; backward runs the other one for the input's gradient.

use rayon::iter::Either;
use rayon::prelude::*;

use super::conv::{col2im, from_channel_major, im2col, to_channel_major, ConvShape};
use super::{for_each_block, matmul_with, MatMut, MatRef, Threads};
use crate::memory::{self, AllocError};

/// Patch values one chunk of images may gather: 128 Ki floats (512 KiB), which stay in a core's L2 cache
/// beside the weights and the chunk's output.
const CHUNK_PATCH_VALUES: usize = 1 << 17;
/// Multiply-adds per image from which images run one at a time with the products split across threads.
const SIDE_BY_SIDE_MACS: usize = 1 << 24;
/// Side by side, a batch is cut into at least this many chunks (when it has the images), for an even load.
const MIN_CHUNKS: usize = 8;
/// Images of at least this many output positions are multiplied one by one within a chunk, straight into
/// the blob, rather than side by side and reordered.
const PER_IMAGE_POSITIONS: usize = 256;
/// Run one chunk at a time on every thread, the weight gradient of a chunk of at least twice this many
/// positions is summed in parts of about this many, side by side.
const WEIGHT_PART_POSITIONS: usize = 2048;
/// Run one chunk at a time, a chunk holds enough images for this many output positions (CaffeNet's 13 × 13
/// maps: 7 images), so that its products are wide enough to run at full speed; large maps take one image.
const MIN_CHUNK_POSITIONS: usize = 1024;
/// The most weight-gradient partials (chunks × weights) worth keeping; beyond, chunks run one at a time.
const MAX_PARTIAL_VALUES: usize = 1 << 23;
/// One image at a time, a strided convolution keeps the batch's patches from forward for backward when they
/// take at most this many values (256 MiB). Strided patches are gathered value by value (CaffeNet's conv1: about
/// as long as its product), so gathering them again costs more than keeping them; stride-1 patches are copied in
/// runs, and gathering them again into cache beats reading them back from memory.
const MAX_KEPT_PATCHES: usize = 1 << 26;

/// Weight-gradient values each thread sums when the partials are added up.
const REDUCE_BLOCK: usize = 4096;

/// Which way a layer runs the convolution forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Convolution: image side (bottom) into channel side (top).
    Convolution,
    /// Deconvolution: channel side (bottom) into image side (top).
    Transposed,
}

/// The gradients backward writes: the weights' and the bias's (added to what they hold, as Caffe accumulates
/// parameter gradients), and the bottom's (overwritten) when it is wanted.
pub struct Gradients<'a> {
    pub weights: &'a mut [f32],
    pub bias: Option<&'a mut [f32]>,
    pub input: Option<&'a mut [f32]>,
}

/// Where the patches of a chunk's image side come from.
#[derive(Clone, Copy)]
enum Patches<'a> {
    /// Gathered now, into the workspace.
    Gather,
    /// Already in the workspace (gathered by the previous step).
    InWorkspace,
    /// Kept from forward.
    Kept(&'a [f32]),
}

/// Scratch for one chunk at a time: its patches, its channel-major values, and (one chunk at a time on every
/// thread) the weight gradients of parts of its positions.
#[derive(Default)]
struct Workspace {
    cols: Vec<f32>,
    channel_major: Vec<f32>,
    weight_parts: Vec<f32>,
}

/// The sizes of one chunk's products: output positions per image, values per patch, columns (positions of the
/// chunk), and per group the patch rows and the output channels.
struct Sizes {
    positions: usize,
    patch: usize,
    width: usize,
    kg: usize,
    mg: usize,
}

/// The geometry of the products, shared by every chunk.
struct Layout {
    shape: ConvShape,
    /// Channels of the channel side.
    outputs: usize,
    group: usize,
}

/// A convolution's geometry for a batch of `num` images with the buffers its passes need, made once per shape
/// (at a layer's reshape) so that passes allocate nothing.
pub struct Convolver {
    direction: Direction,
    layout: Layout,
    num: usize,
    /// Images per chunk, and chunks in the batch.
    chunk: usize,
    chunks: usize,
    /// Chunks run side by side, one per thread; otherwise one image at a time on every thread.
    side_by_side: bool,
    workspaces: Vec<Workspace>,
    /// Side by side: one weight gradient per chunk (`chunks × weights`).
    weight_partials: Vec<f32>,
    /// One bias gradient per chunk, in f64 (`chunks × top channels`).
    bias_partials: Vec<f64>,
    /// One image at a time: the patches of every image (`num × patch_len × positions`), gathered in forward,
    /// when they are worth keeping; and whether forward has filled them since the last reshape.
    kept: Vec<f32>,
    kept_filled: bool,
}

impl Layout {
    fn positions(&self) -> usize {
        self.shape.positions()
    }

    fn image_len(&self) -> usize {
        self.shape.image_len()
    }

    fn channel_len(&self) -> usize {
        self.outputs * self.positions()
    }

    fn weights<'a>(&self, weights: &'a [f32]) -> MatRef<'a> {
        MatRef::new(weights, self.outputs, self.shape.patch_len() / self.group)
    }

    /// Whether a chunk of `count` images is multiplied image by image, each straight from or into its place in
    /// the blob (no channel-major copy): when chunks run side by side (one thread each), hold several images
    /// and each is wide enough. A chunk run on every thread keeps its wide products, which split better.
    fn per_image(&self, threads: Threads, count: usize) -> bool {
        threads == Threads::One && count > 1 && self.positions() >= PER_IMAGE_POSITIONS
    }

    /// The sizes of the products for a chunk of `count` images.
    fn sizes(&self, count: usize) -> Sizes {
        let (positions, patch) = (self.positions(), self.shape.patch_len());
        Sizes {
            positions,
            patch,
            width: count * positions,
            kg: patch / self.group,
            mg: self.outputs / self.group,
        }
    }

    /// `channel` (`count` images) as the products read it: as it is for one image, else channel-major in
    /// `buffer` (converted there when `convert`; otherwise it already holds them).
    fn channel_major<'a>(
        &self,
        threads: Threads,
        count: usize,
        channel: &'a [f32],
        buffer: &'a mut [f32],
        convert: bool,
    ) -> &'a [f32] {
        if count == 1 {
            return channel;
        }
        if convert {
            to_channel_major(
                threads,
                channel,
                count,
                self.outputs,
                self.positions(),
                buffer,
            );
        }
        buffer
    }

    /// The patch matrix (`patch_len × count·positions`) of `count` images of `image`, gathered into `cols`
    /// when `patches` says so.
    fn patches<'a>(
        &self,
        threads: Threads,
        cols: &'a mut [f32],
        count: usize,
        image: &[f32],
        patches: Patches<'a>,
    ) -> MatRef<'a> {
        let values: &[f32] = match patches {
            Patches::Gather => {
                im2col(threads, &self.shape, image, count, cols);
                cols
            }
            Patches::InWorkspace => cols,
            Patches::Kept(kept) => kept,
        };
        MatRef::new(values, self.shape.patch_len(), count * self.positions())
    }

    /// `channel = W · patches(image)` for `count` images, the patches from `patches`.
    #[allow(clippy::too_many_arguments)]
    fn gather(
        &self,
        threads: Threads,
        ws: &mut Workspace,
        weights: &[f32],
        count: usize,
        image: &[f32],
        channel: &mut [f32],
        patches: Patches<'_>,
    ) {
        let Sizes {
            positions,
            width,
            kg,
            mg,
            ..
        } = self.sizes(count);
        let Workspace {
            cols,
            channel_major,
            ..
        } = ws;
        let cols = self.patches(threads, cols, count, image, patches);
        let w = self.weights(weights);
        if self.per_image(threads, count) {
            // Wide enough per image: each image's product writes its channel side where the blob holds it.
            for (i, channel) in channel.chunks_exact_mut(self.channel_len()).enumerate() {
                for g in 0..self.group {
                    matmul_with(
                        threads,
                        MatMut::new(&mut *channel, self.outputs, positions).rows(g * mg, mg),
                        w.rows(g * mg, mg),
                        cols.rows(g * kg, kg).columns(i * positions, positions),
                        1.0,
                        0.0,
                    );
                }
            }
            return;
        }
        // One image's output is its channel side as the blob holds it; more are side by side, then reordered.
        let direct = count == 1;
        let target: &mut [f32] = if direct { channel } else { channel_major };
        for g in 0..self.group {
            let out = MatMut::new(&mut *target, self.outputs, width).rows(g * mg, mg);
            matmul_with(
                threads,
                out,
                w.rows(g * mg, mg),
                cols.rows(g * kg, kg),
                1.0,
                0.0,
            );
        }
        if !direct {
            from_channel_major(
                threads,
                channel_major,
                count,
                self.outputs,
                positions,
                channel,
                false,
            );
        }
    }

    /// `image = col2im(Wᵀ · channel)` for `count` images. With `channel_ready`, `ws.channel_major` already holds
    /// `channel` channel-major (when `count` > 1).
    #[allow(clippy::too_many_arguments)]
    fn scatter(
        &self,
        threads: Threads,
        ws: &mut Workspace,
        weights: &[f32],
        count: usize,
        channel: &[f32],
        image: &mut [f32],
        channel_ready: bool,
    ) {
        let Sizes {
            positions,
            patch,
            width,
            kg,
            mg,
        } = self.sizes(count);
        let Workspace {
            cols,
            channel_major,
            ..
        } = ws;
        let w = self.weights(weights);
        if self.per_image(threads, count) {
            for (i, channel) in channel.chunks_exact(self.channel_len()).enumerate() {
                let x = MatRef::new(channel, self.outputs, positions);
                for g in 0..self.group {
                    matmul_with(
                        threads,
                        MatMut::new(&mut *cols, patch, width)
                            .rows(g * kg, kg)
                            .columns(i * positions, positions),
                        w.rows(g * mg, mg).t(),
                        x.rows(g * mg, mg),
                        1.0,
                        0.0,
                    );
                }
            }
            col2im(threads, &self.shape, cols, count, image);
            return;
        }
        let source = self.channel_major(threads, count, channel, channel_major, !channel_ready);
        let x = MatRef::new(source, self.outputs, width);
        for g in 0..self.group {
            let out = MatMut::new(cols, patch, width).rows(g * kg, kg);
            matmul_with(
                threads,
                out,
                w.rows(g * mg, mg).t(),
                x.rows(g * mg, mg),
                1.0,
                0.0,
            );
        }
        col2im(threads, &self.shape, cols, count, image);
    }

    /// `dw = beta·dw + channel · patches(image)ᵀ` for `count` images, the patches from `patches`. Leaves them
    /// in `ws.cols` when gathered, and `channel` channel-major in `ws.channel_major` when the chunk is not
    /// multiplied image by image (see [`Layout::per_image`]) and holds more than one image.
    #[allow(clippy::too_many_arguments)]
    fn weight_gradient(
        &self,
        threads: Threads,
        ws: &mut Workspace,
        count: usize,
        channel: &[f32],
        image: &[f32],
        patches: Patches<'_>,
        dw: &mut [f32],
        beta: f32,
    ) {
        let Sizes {
            positions,
            width,
            kg,
            mg,
            ..
        } = self.sizes(count);
        let Workspace {
            cols,
            channel_major,
            weight_parts,
        } = ws;
        let cols = self.patches(threads, cols, count, image, patches);
        let weight_count = self.outputs * kg;
        let parts = width / WEIGHT_PART_POSITIONS;
        let in_parts =
            threads == Threads::All && parts >= 2 && weight_parts.len() >= parts * weight_count;
        if self.per_image(threads, count) && !in_parts {
            for (i, channel) in channel.chunks_exact(self.channel_len()).enumerate() {
                let d = MatRef::new(channel, self.outputs, positions);
                for g in 0..self.group {
                    matmul_with(
                        threads,
                        MatMut::new(&mut *dw, self.outputs, kg).rows(g * mg, mg),
                        d.rows(g * mg, mg),
                        cols.rows(g * kg, kg).columns(i * positions, positions).t(),
                        1.0,
                        if i == 0 { beta } else { 1.0 },
                    );
                }
            }
            return;
        }
        let source = self.channel_major(threads, count, channel, channel_major, true);
        let d = MatRef::new(source, self.outputs, width);
        if in_parts {
            // The weight gradient is small beside the positions it sums over (an FCN's 32 × 288 over 16384):
            // the product alone would run on one thread. Each part of the positions gets its own, on its own
            // thread, and the parts are added in order (a split fixed by the shape: the same on any thread count).
            let part_len = width.div_ceil(parts);
            weight_parts[..parts * weight_count]
                .par_chunks_mut(weight_count)
                .enumerate()
                .for_each(|(part, out)| {
                    let start = part * part_len;
                    let len = part_len.min(width - start);
                    for g in 0..self.group {
                        matmul_with(
                            Threads::One,
                            MatMut::new(&mut *out, self.outputs, kg).rows(g * mg, mg),
                            d.rows(g * mg, mg).columns(start, len),
                            cols.rows(g * kg, kg).columns(start, len).t(),
                            1.0,
                            0.0,
                        );
                    }
                });
            let parts = &weight_parts[..parts * weight_count];
            for_each_block(
                threads,
                &mut dw[..weight_count],
                REDUCE_BLOCK,
                |b, block| {
                    let start = b * REDUCE_BLOCK;
                    for v in block.iter_mut() {
                        *v *= beta;
                    }
                    for part in parts.chunks_exact(weight_count) {
                        for (v, &p) in block.iter_mut().zip(&part[start..]) {
                            *v += p;
                        }
                    }
                },
            );
            return;
        }
        for g in 0..self.group {
            let out = MatMut::new(&mut *dw, self.outputs, kg).rows(g * mg, mg);
            matmul_with(
                threads,
                out,
                d.rows(g * mg, mg),
                cols.rows(g * kg, kg).t(),
                1.0,
                beta,
            );
        }
    }
}

/// Adds `bias[c]` to every value of channel `c` of each image in `top` (images of `bias.len()` planes of
/// `plane` values).
fn add_bias(top: &mut [f32], bias: &[f32], plane: usize) {
    if plane == 0 {
        return;
    }
    for image in top.chunks_exact_mut(bias.len() * plane) {
        for (channel, &b) in image.chunks_exact_mut(plane).zip(bias) {
            channel.iter_mut().for_each(|v| *v += b);
        }
    }
}

/// `sums[c]` = the sum of channel `c` over the images in `top` (images of `sums.len()` planes of `plane`
/// values). Each plane is summed in f32 over 16 independent lanes (which the compiler vectorizes; one running
/// sum would wait on every addition), and planes are added up in f64.
fn channel_sums(top: &[f32], sums: &mut [f64], plane: usize) {
    const LANES: usize = 16;
    sums.fill(0.0);
    if plane == 0 {
        return;
    }
    for image in top.chunks_exact(sums.len() * plane) {
        for (channel, sum) in image.chunks_exact(plane).zip(sums.iter_mut()) {
            let mut lanes = [0.0f32; LANES];
            let mut blocks = channel.chunks_exact(LANES);
            for block in &mut blocks {
                for (lane, &v) in lanes.iter_mut().zip(block) {
                    *lane += v;
                }
            }
            let tail: f64 = blocks.remainder().iter().map(|&v| f64::from(v)).sum();
            *sum += lanes.iter().map(|&v| f64::from(v)).sum::<f64>() + tail;
        }
    }
}

impl Convolver {
    /// The convolution `shape` (of the image side) with `outputs` channel-side channels in `group` groups, for
    /// `num` images and a top of `top_channels` channels (the bias's length); an error when its buffers
    /// cannot be allocated.
    pub fn new(
        direction: Direction,
        shape: ConvShape,
        outputs: usize,
        group: usize,
        num: usize,
        top_channels: usize,
    ) -> Result<Convolver, AllocError> {
        Self::planned(direction, shape, outputs, group, num, top_channels, None)
    }

    /// [`Convolver::new`] with the plan given (images per chunk, side by side, patches kept) instead of chosen.
    fn planned(
        direction: Direction,
        shape: ConvShape,
        outputs: usize,
        group: usize,
        num: usize,
        top_channels: usize,
        plan: Option<(usize, bool, bool)>,
    ) -> Result<Convolver, AllocError> {
        let layout = Layout {
            shape,
            outputs,
            group,
        };
        let (positions, patch) = (layout.positions(), layout.shape.patch_len());
        let image_patches = patch * positions;
        let image_macs = outputs * (patch / group.max(1)) * positions;
        let weight_count = outputs * (patch / group.max(1));
        let mut chunk = 1;
        let mut side_by_side = false;
        if num > 1 && weight_count > 0 && image_macs < SIDE_BY_SIDE_MACS {
            let by_cache = (CHUNK_PATCH_VALUES / image_patches.max(1)).max(1);
            chunk = by_cache.min(num.div_ceil(MIN_CHUNKS)).max(1);
            side_by_side = num.div_ceil(chunk) * weight_count <= MAX_PARTIAL_VALUES;
        }
        if !side_by_side {
            chunk = MIN_CHUNK_POSITIONS
                .div_ceil(positions.max(1))
                .clamp(1, num.max(1));
        }
        if let Some((given_chunk, given_side_by_side, _)) = plan {
            (chunk, side_by_side) = (given_chunk, given_side_by_side);
        }
        let chunks = num.div_ceil(chunk);
        let workers = if side_by_side {
            rayon::current_num_threads().clamp(1, chunks)
        } else {
            1
        };
        let mut workspaces = Vec::new();
        for _ in 0..workers {
            let mut ws = Workspace::default();
            memory::resize(&mut ws.cols, patch * chunk * positions, 0.0, || {
                "the convolution patches".into()
            })?;
            let parts = chunk * positions / WEIGHT_PART_POSITIONS;
            if !side_by_side && parts >= 2 {
                memory::resize(&mut ws.weight_parts, parts * weight_count, 0.0, || {
                    "the convolution's weight-gradient parts".into()
                })?;
            }
            if chunk > 1 {
                memory::resize(
                    &mut ws.channel_major,
                    outputs * chunk * positions,
                    0.0,
                    || "the convolution's channel-major buffer".into(),
                )?;
            }
            workspaces.push(ws);
        }
        let weight_partials = if side_by_side {
            memory::zeroed(chunks * weight_count, || {
                "the convolution's weight-gradient partials".into()
            })?
        } else {
            Vec::new()
        };
        // At least one value per chunk, so that every chunk has its own (possibly unused) slot.
        let bias_partials = memory::zeroed(chunks * top_channels.max(1), || {
            "the convolution's bias-gradient partials".into()
        })?;
        let strided = layout.shape.stride.last().is_some_and(|&s| s > 1);
        let keep = direction == Direction::Convolution
            && !side_by_side
            && plan.map_or(
                strided && num * image_patches <= MAX_KEPT_PATCHES,
                |(_, _, keep)| keep,
            );
        let kept = if keep {
            memory::zeroed(num * image_patches, || {
                "the convolution patches kept for backward".into()
            })?
        } else {
            Vec::new()
        };
        Ok(Convolver {
            direction,
            layout,
            num,
            chunk,
            chunks,
            side_by_side,
            workspaces,
            weight_partials,
            bias_partials,
            kept,
            kept_filled: false,
        })
    }

    /// Images in the batch.
    pub fn num(&self) -> usize {
        self.num
    }

    /// The convolution's geometry.
    pub fn shape(&self) -> &ConvShape {
        &self.layout.shape
    }

    /// Values per image of the bottom and the top.
    fn lens(&self) -> (usize, usize) {
        let (image, channel) = (self.layout.image_len(), self.layout.channel_len());
        match self.direction {
            Direction::Convolution => (image, channel),
            Direction::Transposed => (channel, image),
        }
    }

    /// Chunks per worker when side by side.
    fn chunks_per_worker(&self) -> usize {
        self.chunks.div_ceil(self.workspaces.len().max(1))
    }

    /// `top = conv(bottom) + bias` for the whole batch (`weights` as the layer holds them).
    pub fn forward(
        &mut self,
        weights: &[f32],
        bias: Option<&[f32]>,
        bottom: &[f32],
        top: &mut [f32],
    ) {
        let (x_len, y_len) = self.lens();
        let (n, chunk, direction) = (self.num, self.chunk, self.direction);
        self.kept_filled = false;
        if n * y_len == 0 {
            return;
        }
        let layout = &self.layout;
        let work = |threads: Threads,
                    ws: &mut Workspace,
                    first: usize,
                    y: &mut [f32],
                    patches: Patches<'_>| {
            let count = y.len() / y_len;
            let x = &bottom[first * x_len..(first + count) * x_len];
            match direction {
                Direction::Convolution => layout.gather(threads, ws, weights, count, x, y, patches),
                Direction::Transposed => layout.scatter(threads, ws, weights, count, x, y, false),
            }
            if let Some(bias) = bias {
                add_bias(y, bias, y_len / bias.len().max(1));
            }
        };
        let top = &mut top[..n * y_len];
        if !self.side_by_side {
            let image_patches = self.layout.shape.patch_len() * self.layout.positions();
            for (c, y) in top.chunks_mut(chunk * y_len).enumerate() {
                let (first, count) = (c * chunk, y.len() / y_len);
                let patches = if self.kept.is_empty() {
                    Patches::Gather
                } else {
                    let x = &bottom[first * x_len..(first + count) * x_len];
                    let kept =
                        &mut self.kept[first * image_patches..(first + count) * image_patches];
                    im2col(Threads::All, &self.layout.shape, x, count, kept);
                    Patches::Kept(kept)
                };
                work(Threads::All, &mut self.workspaces[0], first, y, patches);
            }
            self.kept_filled = !self.kept.is_empty();
            return;
        }
        let per = self.chunks_per_worker();
        top.par_chunks_mut(per * chunk * y_len)
            .zip(self.workspaces.par_iter_mut())
            .enumerate()
            .for_each(|(worker, (top, ws))| {
                for (j, y) in top.chunks_mut(chunk * y_len).enumerate() {
                    work(
                        Threads::One,
                        ws,
                        (worker * per + j) * chunk,
                        y,
                        Patches::Gather,
                    );
                }
            });
    }

    /// The gradients of the whole batch from the top's gradient `top_diff` and the bottom's values `bottom`.
    pub fn backward(
        &mut self,
        weights: &[f32],
        bottom: &[f32],
        top_diff: &[f32],
        gradients: Gradients<'_>,
    ) {
        let (x_len, y_len) = self.lens();
        let (n, chunk, chunks, direction) = (self.num, self.chunk, self.chunks, self.direction);
        let Gradients {
            weights: dw,
            bias: db,
            input: dx,
        } = gradients;
        if n * y_len == 0 {
            if let Some(dx) = dx {
                dx[..n * x_len].fill(0.0);
            }
            return;
        }
        let layout = &self.layout;
        let per = self.chunks_per_worker();
        let top_channels = db.as_ref().map_or(0, |db| db.len());
        // Each chunk's bias sums: `top_channels` values at a stride of at least 1 (see `new`).
        let bias_stride = top_channels.max(1);
        // One chunk: the weight gradient into `dw` (scaled by `beta` first), the bias's channel sums into
        // `db_sums`, and the bottom's gradient into `dx`.
        let kept: Option<&[f32]> = self.kept_filled.then_some(&self.kept);
        let image_patches = layout.shape.patch_len() * layout.positions();
        let work = |threads: Threads,
                    ws: &mut Workspace,
                    first: usize,
                    count: usize,
                    dx: Option<&mut [f32]>,
                    dw: &mut [f32],
                    beta: f32,
                    db_sums: &mut [f64]| {
            let x = &bottom[first * x_len..(first + count) * x_len];
            let dy = &top_diff[first * y_len..(first + count) * y_len];
            match direction {
                Direction::Convolution => {
                    let patches = kept.map_or(Patches::Gather, |kept| {
                        Patches::Kept(&kept[first * image_patches..(first + count) * image_patches])
                    });
                    layout.weight_gradient(threads, ws, count, dy, x, patches, dw, beta);
                    if let Some(dx) = dx {
                        layout.scatter(threads, ws, weights, count, dy, dx, true);
                    }
                }
                Direction::Transposed => {
                    layout.weight_gradient(threads, ws, count, x, dy, Patches::Gather, dw, beta);
                    if let Some(dx) = dx {
                        layout.gather(threads, ws, weights, count, dy, dx, Patches::InWorkspace);
                    }
                }
            }
            if !db_sums.is_empty() {
                channel_sums(dy, db_sums, y_len / db_sums.len());
            }
        };
        let mut dx = dx.map(|dx| &mut dx[..n * x_len]);
        let bias_partials = &mut self.bias_partials[..chunks * bias_stride];
        if !self.side_by_side {
            for c in 0..chunks {
                let (first, count) = (c * chunk, chunk.min(n - c * chunk));
                let dx = dx
                    .as_deref_mut()
                    .map(|dx| &mut dx[first * x_len..(first + count) * x_len]);
                let db_sums = &mut bias_partials[c * bias_stride..c * bias_stride + top_channels];
                work(
                    Threads::All,
                    &mut self.workspaces[0],
                    first,
                    count,
                    dx,
                    dw,
                    1.0,
                    db_sums,
                );
            }
        } else {
            let weight_count = dw.len();
            let work = &work;
            // Worker w takes chunks w·per .. (w + 1)·per with their images, partials and workspace: the pieces
            // are cut by parallel iterators, which allocate nothing.
            let workers = chunks.div_ceil(per);
            let dx_pieces = match dx {
                Some(dx) => Either::Left(dx.par_chunks_mut(per * chunk * x_len).map(Some)),
                None => Either::Right((0..workers).into_par_iter().map(|_| None)),
            };
            self.workspaces[..workers]
                .par_iter_mut()
                .zip(
                    self.weight_partials[..chunks * weight_count]
                        .par_chunks_mut(per * weight_count),
                )
                .zip(bias_partials.par_chunks_mut(per * bias_stride))
                .zip(dx_pieces)
                .enumerate()
                .for_each(|(worker, (((ws, my_dw), my_db), mut my_dx))| {
                    let first = worker * per * chunk;
                    let images = (per * chunk).min(n - first);
                    for j in 0..per.min(chunks - worker * per) {
                        let start = j * chunk;
                        let count = chunk.min(images - start);
                        let dx = my_dx
                            .as_deref_mut()
                            .map(|dx| &mut dx[start * x_len..(start + count) * x_len]);
                        work(
                            Threads::One,
                            ws,
                            first + start,
                            count,
                            dx,
                            &mut my_dw[j * weight_count..(j + 1) * weight_count],
                            0.0,
                            &mut my_db[j * bias_stride..j * bias_stride + top_channels],
                        );
                    }
                });
            // Partials summed in chunk order: the same result on any number of threads.
            let partials = &self.weight_partials;
            for_each_block(Threads::All, dw, REDUCE_BLOCK, |b, block| {
                let start = b * REDUCE_BLOCK;
                for partial in partials.chunks_exact(weight_count) {
                    for (v, &p) in block.iter_mut().zip(&partial[start..]) {
                        *v += p;
                    }
                }
            });
        }
        if let Some(db) = db {
            for (o, v) in db.iter_mut().enumerate() {
                let total: f64 = (0..chunks)
                    .map(|c| self.bias_partials[c * bias_stride + o])
                    .sum();
                *v += total as f32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(len: usize, seed: usize) -> Vec<f32> {
        (0..len)
            .map(|i| (((i * 7919 + seed * 104_729) % 211) as f32 / 105.0) - 1.0)
            .collect()
    }

    fn dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(&x, &y)| f64::from(x) * f64::from(y))
            .sum()
    }

    /// A grouped, strided, padded 2-D convolution of 7 images run every way a batch can be cut (one image at a
    /// time, and side by side in chunks of 1, 3 and 7): forward equals the definition, and backward's
    /// gradients satisfy the adjoint identities `<conv(x), g> = <x, dx>` and `<conv_V(x), g> = <V, dW>`.
    #[test]
    fn every_plan_computes_the_convolution_and_its_adjoints() {
        let (num, group, outputs) = (7, 2, 6);
        let shape = ConvShape::new(4, &[6, 5], &[3, 2], &[2, 1], &[1, 1], &[1, 2]).unwrap();
        let (positions, patch) = (shape.positions(), shape.patch_len());
        let (kg, mg, cg) = (patch / group, outputs / group, shape.channels / group);
        let (image_len, channel_len) = (shape.image_len(), outputs * positions);
        let weights = values(outputs * kg, 1);
        let bias = values(outputs, 2);
        let x = values(num * image_len, 3);
        let g = values(num * channel_len, 4);
        let other = values(outputs * kg, 5);
        // The definition: y[n, o, p] = b[o] + sum over the group's patch values.
        let mut cols = vec![0.0; patch * positions];
        let mut expected = vec![0.0f32; num * channel_len];
        for i in 0..num {
            im2col(Threads::One, &shape, &x[i * image_len..], 1, &mut cols);
            for o in 0..outputs {
                let gi = o / mg;
                for p in 0..positions {
                    let mut v = f64::from(bias[o]);
                    for k in 0..kg {
                        let row = gi * cg * (patch / shape.channels) + k;
                        v += f64::from(weights[o * kg + k]) * f64::from(cols[row * positions + p]);
                    }
                    expected[(i * outputs + o) * positions + p] = v as f32;
                }
            }
        }
        for plan in [
            (1, false, false),
            (1, false, true),
            (3, false, false),
            (3, false, true),
            (1, true, false),
            (3, true, false),
            (7, true, false),
        ] {
            let mut conv = Convolver::planned(
                Direction::Convolution,
                shape.clone(),
                outputs,
                group,
                num,
                outputs,
                Some(plan),
            )
            .unwrap();
            assert_eq!(conv.chunks, num.div_ceil(plan.0));
            let mut y = vec![f32::NAN; num * channel_len];
            conv.forward(&weights, Some(&bias), &x, &mut y);
            for (a, b) in y.iter().zip(&expected) {
                assert!((a - b).abs() < 1e-5, "{plan:?}: {a} vs {b}");
            }
            let mut dw = vec![0.5; weights.len()];
            let mut db = vec![0.25; outputs];
            let mut dx = vec![f32::NAN; x.len()];
            conv.backward(
                &weights,
                &x,
                &g,
                Gradients {
                    weights: &mut dw,
                    bias: Some(&mut db),
                    input: Some(&mut dx),
                },
            );
            // A second backward after one forward gives the same gradients (kept patches stay intact).
            let (mut dw2, mut dx2) = (vec![0.5; weights.len()], vec![f32::NAN; x.len()]);
            conv.backward(
                &weights,
                &x,
                &g,
                Gradients {
                    weights: &mut dw2,
                    bias: None,
                    input: Some(&mut dx2),
                },
            );
            assert_eq!((&dw2, &dx2), (&dw, &dx), "{plan:?}: backward twice");
            let mut y_nobias = vec![0.0; y.len()];
            conv.forward(&weights, None, &x, &mut y_nobias);
            let lhs = dot(&y_nobias, &g);
            assert!(
                (lhs - dot(&x, &dx)).abs() < 1e-4 * lhs.abs().max(1.0),
                "{plan:?} dx"
            );
            let mut y_other = vec![0.0; y.len()];
            conv.forward(&other, None, &x, &mut y_other);
            let dw_net: Vec<f32> = dw.iter().map(|v| v - 0.5).collect();
            let lhs = dot(&y_other, &g);
            assert!(
                (lhs - dot(&other, &dw_net)).abs() < 1e-4 * lhs.abs().max(1.0),
                "{plan:?} dW"
            );
            for (o, &v) in db.iter().enumerate() {
                let sum: f64 = (0..num)
                    .flat_map(|i| {
                        &g[(i * outputs + o) * positions..(i * outputs + o + 1) * positions]
                    })
                    .map(|&v| f64::from(v))
                    .sum();
                assert!((f64::from(v) - 0.25 - sum).abs() < 1e-4, "{plan:?} db");
            }
        }
    }

    /// The transposed direction (Deconvolution) is the adjoint of the convolution in every plan, forward and
    /// for the input's gradient, and its weight gradient satisfies the same identity.
    #[test]
    fn transposed_runs_are_adjoint_in_every_plan() {
        let (num, group, outputs) = (5, 1, 3);
        let shape = ConvShape::new(2, &[7, 6], &[3, 3], &[2, 2], &[1, 0], &[1, 1]).unwrap();
        let (image_len, channel_len) = (shape.image_len(), outputs * shape.positions());
        let weights = values(outputs * shape.patch_len(), 6);
        let other = values(weights.len(), 7);
        let x = values(num * channel_len, 8);
        let g = values(num * image_len, 9);
        let z = values(num * image_len, 10);
        for plan in [
            (1, false, false),
            (2, false, false),
            (2, true, false),
            (5, true, false),
        ] {
            let mut deconv = Convolver::planned(
                Direction::Transposed,
                shape.clone(),
                outputs,
                group,
                num,
                2,
                Some(plan),
            )
            .unwrap();
            let mut conv = Convolver::planned(
                Direction::Convolution,
                shape.clone(),
                outputs,
                group,
                num,
                outputs,
                Some(plan),
            )
            .unwrap();
            let mut y = vec![0.0; num * image_len];
            deconv.forward(&weights, None, &x, &mut y);
            // <deconv(x), z> = <x, conv(z)>.
            let mut cz = vec![0.0; num * channel_len];
            conv.forward(&weights, None, &z, &mut cz);
            let lhs = dot(&y, &z);
            assert!(
                (lhs - dot(&x, &cz)).abs() < 1e-4 * lhs.abs().max(1.0),
                "{plan:?}"
            );
            let (mut dw, mut dx) = (vec![0.0; weights.len()], vec![0.0; x.len()]);
            deconv.backward(
                &weights,
                &x,
                &g,
                Gradients {
                    weights: &mut dw,
                    bias: None,
                    input: Some(&mut dx),
                },
            );
            let lhs = dot(&y, &g);
            assert!(
                (lhs - dot(&x, &dx)).abs() < 1e-4 * lhs.abs().max(1.0),
                "{plan:?} dx"
            );
            let mut y_other = vec![0.0; y.len()];
            deconv.forward(&other, None, &x, &mut y_other);
            let lhs = dot(&y_other, &g);
            assert!(
                (lhs - dot(&other, &dw)).abs() < 1e-4 * lhs.abs().max(1.0),
                "{plan:?} dW"
            );
        }
    }

    /// A large map run one image at a time sums its weight gradient in parts of the positions: the same as
    /// one product over them all (side by side, one chunk per image), up to rounding; and a chunk of two such
    /// maps multiplied image by image gives the same outputs and gradients.
    #[test]
    fn weight_gradients_summed_in_parts_match_one_product() {
        let (num, outputs) = (2, 3);
        let shape = ConvShape::new(2, &[70, 66], &[3, 3], &[1, 1], &[1, 1], &[1, 1]).unwrap();
        let weights = values(outputs * shape.patch_len(), 11);
        let x = values(num * shape.image_len(), 12);
        let g = values(num * outputs * shape.positions(), 13);
        let mut results = Vec::new();
        let mut outputs_seen: Vec<Vec<f32>> = Vec::new();
        // One image at a time; one image per chunk side by side; both images in one chunk, multiplied one by
        // one (their maps are wide).
        for plan in [(1, false, false), (1, true, false), (2, true, false)] {
            let mut conv = Convolver::planned(
                Direction::Convolution,
                shape.clone(),
                outputs,
                1,
                num,
                outputs,
                Some(plan),
            )
            .unwrap();
            assert_eq!(conv.workspaces[0].weight_parts.is_empty(), plan.1);
            let mut y = vec![0.0; g.len()];
            conv.forward(&weights, None, &x, &mut y);
            if let Some(first) = outputs_seen.first() {
                for (a, b) in y.iter().zip(first) {
                    assert!(
                        (a - b).abs() < 1e-4 * b.abs().max(1.0),
                        "{plan:?}: {a} vs {b}"
                    );
                }
            }
            outputs_seen.push(y.clone());
            let mut dw = vec![1.0; weights.len()];
            let mut dx = vec![f32::NAN; x.len()];
            conv.backward(
                &weights,
                &x,
                &g,
                Gradients {
                    weights: &mut dw,
                    bias: None,
                    input: Some(&mut dx),
                },
            );
            dw.extend_from_slice(&dx);
            results.push(dw);
        }
        for other in &results[1..] {
            for (a, b) in results[0].iter().zip(other) {
                assert!((a - b).abs() < 1e-3 * b.abs().max(1.0), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn small_images_run_side_by_side_and_large_ones_one_at_a_time() {
        let lenet = ConvShape::new(20, &[12, 12], &[5, 5], &[1, 1], &[0, 0], &[1, 1]).unwrap();
        let conv = Convolver::new(Direction::Convolution, lenet, 50, 1, 64, 50).unwrap();
        assert!(conv.side_by_side);
        assert_eq!((conv.chunk, conv.chunks), (4, 16));
        let fcn = ConvShape::new(64, &[64, 64], &[3, 3], &[1, 1], &[1, 1], &[1, 1]).unwrap();
        let conv = Convolver::new(Direction::Convolution, fcn, 64, 1, 4, 64).unwrap();
        assert!(!conv.side_by_side);
        assert_eq!((conv.chunk, conv.chunks), (1, 4));
        // CaffeNet's conv3: 13 × 13 maps, one chunk of 7 images at a time (products 1183 positions wide).
        let conv3 = ConvShape::new(256, &[13, 13], &[3, 3], &[1, 1], &[1, 1], &[1, 1]).unwrap();
        let conv = Convolver::new(Direction::Convolution, conv3, 384, 1, 16, 384).unwrap();
        assert!(!conv.side_by_side);
        assert_eq!((conv.chunk, conv.chunks), (7, 3));
    }
}
