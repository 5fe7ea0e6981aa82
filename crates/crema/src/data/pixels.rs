//! Images as Caffe's data layers hold them: 8-bit values in channels-first order (CHW), colour as BGR, since
//! Caffe reads images with OpenCV. Decoding (JPEG and PNG), resizing, grey conversion and encoding live here.
//!
//! How an image is decoded depends on a [`ColorMode`], after OpenCV's read flags:
//!
//! - [`ColorMode::Color`] (OpenCV's `IMREAD_COLOR`, Caffe's `is_color: true`): 3 channels, B G R; a grey image
//!   is repeated into the three, an alpha channel dropped.
//! - [`ColorMode::Gray`] (`IMREAD_GRAYSCALE`): 1 channel; colour becomes grey with OpenCV's weights
//!   (Y = 0.299 R + 0.587 G + 0.114 B in 14-bit fixed point, rounded).
//! - [`ColorMode::Native`] (`IMREAD_UNCHANGED`, used for `encoded` Datums): grey stays 1 channel, colour 3
//!   (BGR), colour with alpha 4 (BGRA). A grey image's alpha is dropped.
//!
//! 16-bit images are brought to 8 bits (OpenCV's colour and grey reads do so too; Caffe refuses 16-bit images
//! decoded unchanged, crema converts them). Decoding is limited to 512 MiB, both what the decoder holds and the
//! image made of it (a grey image read as colour makes three times its decoded size), checked against the
//! header, so an image header claiming huge dimensions is refused before anything is allocated; image files
//! are read up to twice that size. JPEG decoding is done by the `image` crate rather than libjpeg, so pixel
//! values may differ from OpenCV's by a unit or two.
//!
//! [`Image::resize`] is OpenCV's bilinear `cv::resize` (`INTER_LINEAR`): half-pixel centres, edges clamped,
//! 11-bit fixed-point weights. It can differ by one from OpenCV's vectorized code, which rounds in two steps.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ExtendedColorType, ImageDecoder, ImageEncoder, ImageReader, Limits};

use crate::error::{Error, Result};

/// The most bytes of pixels an image may hold (after decoding), and the decoders' memory limit.
pub const MAX_IMAGE_BYTES: usize = 512 * 1024 * 1024;

/// The most pixels an image may have on one side after resizing (JPEG's own limit): resizing buffers grow
/// with each side, whatever the image's total size.
pub const MAX_SIDE: usize = 65_535;

/// How to decode an image: as colour, as grey, or as stored. See the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorMode {
    /// 3 channels, BGR.
    Color,
    /// 1 channel.
    Gray,
    /// As stored: 1 (grey), 3 (BGR) or 4 (BGRA) channels.
    Native,
}

/// The file formats images are encoded in (for `encoded` Datums).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Png,
    Jpeg,
}

impl Encoding {
    /// The encoding an extension or `encode_type` names (`png`, `jpg`, `jpeg`; any case), if crema writes it.
    pub fn from_name(name: &str) -> Option<Encoding> {
        match name.to_ascii_lowercase().as_str() {
            "png" => Some(Encoding::Png),
            "jpg" | "jpeg" => Some(Encoding::Jpeg),
            _ => None,
        }
    }
}

/// An 8-bit image, channels first (CHW), colour channels in BGR(A) order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    channels: usize,
    height: usize,
    width: usize,
    values: Vec<u8>,
}

/// What went wrong with an image; the caller adds which file or record it was.
pub type ImageResult<T> = std::result::Result<T, String>;

impl Image {
    /// An image from its values in CHW order; an error when their count is not `channels × height × width`.
    pub fn new(
        channels: usize,
        height: usize,
        width: usize,
        values: Vec<u8>,
    ) -> ImageResult<Image> {
        check_image_len(channels, height, width, values.len())?;
        Ok(Image {
            channels,
            height,
            width,
            values,
        })
    }

    /// The number of channels: 1 (grey), 3 (BGR) or 4 (BGRA).
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Rows.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Columns.
    pub fn width(&self) -> usize {
        self.width
    }

    /// The values, channel by channel, each channel row by row.
    pub fn values(&self) -> &[u8] {
        &self.values
    }

    /// The values, consuming the image.
    pub fn into_values(self) -> Vec<u8> {
        self.values
    }

    /// The image resized to `height × width` as OpenCV's bilinear `cv::resize` does (see the module
    /// documentation); the same image when the size is already that. Both sizes must be positive.
    pub fn resize(&self, height: usize, width: usize) -> ImageResult<Image> {
        if height == 0 || width == 0 {
            return Err(format!(
                "cannot resize to {height} × {width}: both sizes must be positive"
            ));
        }
        if height > MAX_SIDE || width > MAX_SIDE {
            return Err(format!(
                "cannot resize to {height} × {width}: at most {MAX_SIDE} pixels a side (JPEG's limit)"
            ));
        }
        if (height, width) == (self.height, self.width) {
            return Ok(self.clone());
        }
        if self.height == 0 || self.width == 0 {
            return Err("cannot resize an empty image".into());
        }
        let bytes = self
            .channels
            .checked_mul(height)
            .and_then(|n| n.checked_mul(width))
            .filter(|&n| n <= MAX_IMAGE_BYTES)
            .ok_or_else(|| {
                format!("resizing to {height} × {width} would make an image over 512 MiB")
            })?;
        let xs = taps(self.width, width);
        let ys = taps(self.height, height);
        let mut out = vec![0u8; bytes];
        // One horizontally resized source row at a time, for the two source rows a destination row mixes.
        let mut rows = [vec![0i32; width], vec![0i32; width]];
        for c in 0..self.channels {
            let plane =
                &self.values[c * self.height * self.width..(c + 1) * self.height * self.width];
            let mut cached = [usize::MAX, usize::MAX];
            for (dy, tap) in ys.iter().enumerate() {
                for (k, &sy) in [tap.first, tap.second].iter().enumerate() {
                    if cached[k] != sy {
                        let src = &plane[sy * self.width..(sy + 1) * self.width];
                        for (d, t) in rows[k].iter_mut().zip(&xs) {
                            *d = i32::from(src[t.first]) * t.weights[0]
                                + i32::from(src[t.second]) * t.weights[1];
                        }
                        cached[k] = sy;
                    }
                }
                let dst = &mut out[(c * height + dy) * width..(c * height + dy + 1) * width];
                for ((d, &a), &b) in dst.iter_mut().zip(&rows[0]).zip(&rows[1]) {
                    let v = (i64::from(a) * i64::from(tap.weights[0])
                        + i64::from(b) * i64::from(tap.weights[1])
                        + (1 << 21))
                        >> 22;
                    *d = v.clamp(0, 255) as u8;
                }
            }
        }
        Image::new(self.channels, height, width, out)
    }

    /// The image as 1 grey channel (OpenCV's weights for colour); the same image when it is grey already.
    pub fn to_gray(&self) -> Image {
        if self.channels == 1 {
            return self.clone();
        }
        let plane = self.height * self.width;
        let mut values = vec![0u8; plane];
        if self.channels >= 3 {
            let (b, rest) = self.values.split_at(plane);
            let (g, r) = rest.split_at(plane);
            for (i, v) in values.iter_mut().enumerate() {
                *v = gray(r[i], g[i], b[i]);
            }
        } else {
            values.copy_from_slice(&self.values[..plane]);
        }
        Image {
            channels: 1,
            height: self.height,
            width: self.width,
            values,
        }
    }

    /// The image as 3 channels (BGR): grey repeated, alpha dropped.
    pub fn to_color(&self) -> Image {
        let plane = self.height * self.width;
        let mut values = Vec::with_capacity(3 * plane);
        match self.channels {
            3 => return self.clone(),
            1 | 2 => (0..3).for_each(|_| values.extend_from_slice(&self.values[..plane])),
            _ => values.extend_from_slice(&self.values[..3 * plane]),
        }
        Image {
            channels: 3,
            height: self.height,
            width: self.width,
            values,
        }
    }

    /// The image as a PNG or JPEG file's bytes (JPEG at quality 95, OpenCV's default). A JPEG holds 1 or 3
    /// channels; a PNG 1, 3 or 4.
    pub fn encode(&self, encoding: Encoding) -> ImageResult<Vec<u8>> {
        let (w, h) = (
            u32::try_from(self.width).map_err(|_| "image too wide to encode".to_owned())?,
            u32::try_from(self.height).map_err(|_| "image too tall to encode".to_owned())?,
        );
        let plane = self.height * self.width;
        // Interleaved, in RGB(A) order.
        let mut hwc = vec![0u8; self.values.len()];
        let order: &[usize] = match self.channels {
            1 => &[0],
            3 => &[2, 1, 0],
            4 => &[2, 1, 0, 3],
            n => return Err(format!("cannot encode an image of {n} channels")),
        };
        for (k, &c) in order.iter().enumerate() {
            let src = &self.values[c * plane..(c + 1) * plane];
            for (i, &v) in src.iter().enumerate() {
                hwc[i * order.len() + k] = v;
            }
        }
        let color = match self.channels {
            1 => ExtendedColorType::L8,
            3 => ExtendedColorType::Rgb8,
            _ => ExtendedColorType::Rgba8,
        };
        let mut bytes = Vec::new();
        let result = match encoding {
            Encoding::Png => {
                image::codecs::png::PngEncoder::new(&mut bytes).write_image(&hwc, w, h, color)
            }
            Encoding::Jpeg => {
                if self.channels == 4 {
                    return Err("cannot encode an image with alpha as JPEG".into());
                }
                image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 95)
                    .write_image(&hwc, w, h, color)
            }
        };
        result.map_err(|e| format!("cannot encode the image: {e}"))?;
        Ok(bytes)
    }
}

/// OpenCV's grey value of an RGB pixel (cvtColor's 14-bit weights, rounded).
fn gray(r: u8, g: u8, b: u8) -> u8 {
    let y = u32::from(r) * 4899 + u32::from(g) * 9617 + u32::from(b) * 1868 + (1 << 13);
    (y >> 14) as u8
}

/// The two source positions one destination position mixes, and their 11-bit weights.
struct Tap {
    first: usize,
    second: usize,
    weights: [i32; 2],
}

/// The taps of a bilinear resize from `src` to `dst` positions, as OpenCV computes them.
fn taps(src: usize, dst: usize) -> Vec<Tap> {
    let scale = src as f64 / dst as f64;
    (0..dst)
        .map(|d| {
            let f = ((d as f64 + 0.5) * scale - 0.5) as f32;
            let mut s = f.floor() as i64;
            let mut frac = f - s as f32;
            if s < 0 {
                s = 0;
                frac = 0.0;
            }
            if s >= src as i64 - 1 {
                s = src as i64 - 1;
                frac = 0.0;
            }
            let s = s as usize;
            let weight = |v: f32| (v * 2048.0).round() as i32;
            Tap {
                first: s,
                second: (s + 1).min(src - 1),
                weights: [weight(1.0 - frac), weight(frac)],
            }
        })
        .collect()
}

/// Decodes a JPEG or PNG image held in `bytes` (the format told by its content) in `mode`. An image whose
/// decoded pixels, or the image made of them in `mode`, would pass [`MAX_IMAGE_BYTES`] is refused from its
/// header, before anything is allocated for it.
pub fn decode(bytes: &[u8], mode: ColorMode) -> ImageResult<Image> {
    decode_within(bytes, mode, MAX_IMAGE_BYTES)
}

/// [`decode`] with a limit of `max_bytes`: on what the decoder holds (its output and, as far as the decoder
/// honours the limit, its own buffers) and on the image made of it, which may hold more (grey made colour).
fn decode_within(bytes: &[u8], mode: ColorMode, max_bytes: usize) -> ImageResult<Image> {
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| format!("cannot read the image: {e}"))?;
    if reader.format().is_none() {
        return Err("not a JPEG or PNG image (unknown format)".into());
    }
    let mut limits = Limits::default();
    limits.max_alloc = Some(max_bytes as u64);
    let mut reader = reader;
    reader.limits(limits.clone());
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| format!("cannot read the image: {e}"))?;
    let (width, height) = decoder.dimensions();
    let color = decoder.color_type();
    let channels: u64 = match mode {
        ColorMode::Gray => 1,
        ColorMode::Color => 3,
        ColorMode::Native if !color.has_color() => 1,
        ColorMode::Native if color.has_alpha() => 4,
        ColorMode::Native => 3,
    };
    let decoded = decoder.total_bytes();
    let made = (u64::from(width) * u64::from(height)).saturating_mul(channels);
    if decoded.max(made) > max_bytes as u64 {
        return Err(format!(
            "the image is {height} × {width} ({color:?}); decoded as {channels} channels it needs {} bytes, \
             over the limit of {max_bytes}",
            decoded.max(made)
        ));
    }
    // As `ImageReader::decode`: the output is counted first, the decoder's own buffers get the rest.
    limits
        .reserve(decoded)
        .and_then(|()| decoder.set_limits(limits))
        .map_err(|e| format!("cannot decode the image: {e}"))?;
    let decoded =
        DynamicImage::from_decoder(decoder).map_err(|e| format!("cannot decode the image: {e}"))?;
    Ok(from_decoded(decoded, mode))
}

/// Reads and decodes the image file at `path` in `mode`; errors name the file.
pub fn read_image(path: &Path, mode: ColorMode) -> Result<Image> {
    let bytes = read_file(path)?;
    decode(&bytes, mode).map_err(|reason| invalid(path, reason))
}

/// The bytes of the image file at `path`, refusing a file of more than twice [`MAX_IMAGE_BYTES`] (no JPEG or
/// PNG that decodes within the limit is that large) without reading it all: a list naming a huge file, or a
/// device that never ends, is an error rather than an allocation without bound.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    read_file_within(path, 2 * MAX_IMAGE_BYTES)
}

fn read_file_within(path: &Path, max_bytes: usize) -> Result<Vec<u8>> {
    use std::io::Read as _;
    let size = crate::error::regular_file_size(path)?;
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut bytes = Vec::with_capacity(size.min(max_bytes as u64) as usize);
    file.take(max_bytes as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() > max_bytes {
        return Err(invalid(
            path,
            format!("more than {max_bytes} bytes: too large for an image file"),
        ));
    }
    Ok(bytes)
}

/// An error about the file at `path`: it exists but does not hold what it should.
pub(crate) fn invalid(path: &Path, reason: impl Into<String>) -> Error {
    Error::io(
        path,
        std::io::Error::new(std::io::ErrorKind::InvalidData, reason.into()),
    )
}

/// A decoded image as Caffe holds it in `mode`.
fn from_decoded(decoded: DynamicImage, mode: ColorMode) -> Image {
    let color = decoded.color();
    let (width, height) = (decoded.width() as usize, decoded.height() as usize);
    match mode {
        ColorMode::Gray if !color.has_color() => {
            let values = decoded.into_luma8().into_raw();
            Image {
                channels: 1,
                height,
                width,
                values,
            }
        }
        ColorMode::Native if !color.has_color() => from_decoded(decoded, ColorMode::Gray),
        ColorMode::Native if color.has_alpha() => {
            let rgba = decoded.into_rgba8().into_raw();
            planar(&rgba, 4, &[2, 1, 0, 3], height, width)
        }
        ColorMode::Gray => {
            let rgb = decoded.into_rgb8().into_raw();
            let values = rgb
                .chunks_exact(3)
                .map(|p| gray(p[0], p[1], p[2]))
                .collect();
            Image {
                channels: 1,
                height,
                width,
                values,
            }
        }
        ColorMode::Color | ColorMode::Native => {
            let rgb = decoded.into_rgb8().into_raw();
            planar(&rgb, 3, &[2, 1, 0], height, width)
        }
    }
}

/// Interleaved pixels of `stride` values to planes: plane `k` takes value `order[k]` of each pixel.
fn planar(hwc: &[u8], stride: usize, order: &[usize], height: usize, width: usize) -> Image {
    let plane = height * width;
    let mut values = vec![0u8; plane * order.len()];
    for (k, &from) in order.iter().enumerate() {
        for (dst, pixel) in values[k * plane..(k + 1) * plane]
            .iter_mut()
            .zip(hwc.chunks_exact(stride))
        {
            *dst = pixel[from];
        }
    }
    Image {
        channels: order.len(),
        height,
        width,
        values,
    }
}

/// Whether `len` values fill an image of `channels × height × width` (without overflow), else why not.
pub(crate) fn check_image_len(
    channels: usize,
    height: usize,
    width: usize,
    len: usize,
) -> Result<(), String> {
    let count = channels
        .checked_mul(height)
        .and_then(|n| n.checked_mul(width));
    if count != Some(len) {
        return Err(format!(
            "{len} values for an image of {channels} × {height} × {width}"
        ));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A 3-channel image whose pixel (y, x) has B = 10y + x, G = 100 + B, R = 200 - B... kept in 0..=255.
    pub fn sample(height: usize, width: usize) -> Image {
        let mut values = Vec::new();
        for c in 0..3 {
            for y in 0..height {
                for x in 0..width {
                    let b = (10 * y + x) as u8;
                    values.push(match c {
                        0 => b,
                        1 => 100 + b,
                        _ => 250 - b,
                    });
                }
            }
        }
        Image::new(3, height, width, values).unwrap()
    }

    #[test]
    fn png_round_trips_in_every_mode() {
        let image = sample(3, 4);
        let png = image.encode(Encoding::Png).unwrap();
        assert_eq!(decode(&png, ColorMode::Color).unwrap(), image);
        assert_eq!(decode(&png, ColorMode::Native).unwrap(), image);
        let gray = decode(&png, ColorMode::Gray).unwrap();
        assert_eq!(gray, image.to_gray());
        // Pixel (0, 0): B 0, G 100, R 250: 0.299·250 + 0.587·100 + 0.114·0 = 133.45.
        assert_eq!(gray.values()[0], 133);
        // A grey PNG: 1 channel natively, repeated as colour.
        let png = gray.encode(Encoding::Png).unwrap();
        assert_eq!(decode(&png, ColorMode::Native).unwrap(), gray);
        assert_eq!(decode(&png, ColorMode::Color).unwrap(), gray.to_color());
        assert_eq!(gray.to_color().values()[..12], gray.values()[..]);
        assert_eq!(gray.to_color().values()[24..], gray.values()[..]);
    }

    #[test]
    fn channel_order_is_bgr() {
        // One red pixel, as an RGB PNG.
        let mut png = Vec::new();
        image::codecs::png::PngEncoder::new(&mut png)
            .write_image(&[255, 0, 0], 1, 1, ExtendedColorType::Rgb8)
            .unwrap();
        assert_eq!(
            decode(&png, ColorMode::Color).unwrap().values(),
            [0, 0, 255]
        );
        // RGBA: alpha kept natively (BGRA), dropped as colour.
        let mut png = Vec::new();
        image::codecs::png::PngEncoder::new(&mut png)
            .write_image(&[10, 20, 30, 40], 1, 1, ExtendedColorType::Rgba8)
            .unwrap();
        assert_eq!(
            decode(&png, ColorMode::Native).unwrap().values(),
            [30, 20, 10, 40]
        );
        assert_eq!(
            decode(&png, ColorMode::Color).unwrap().values(),
            [30, 20, 10]
        );
    }

    #[test]
    fn jpeg_decodes_close_to_the_original() {
        let image = sample(8, 8);
        let jpeg = image.encode(Encoding::Jpeg).unwrap();
        let back = decode(&jpeg, ColorMode::Color).unwrap();
        assert_eq!((back.channels(), back.height(), back.width()), (3, 8, 8));
        let worst = back
            .values()
            .iter()
            .zip(image.values())
            .map(|(&a, &b)| (i32::from(a) - i32::from(b)).abs())
            .max()
            .unwrap();
        assert!(worst <= 12, "{worst}");
    }

    #[test]
    fn resize_is_bilinear_with_half_pixel_centres() {
        // 1 × 2 → 1 × 4: positions -0.25, 0.25, 0.75, 1.25 of the source: edges clamped.
        let image = Image::new(1, 1, 2, vec![0, 200]).unwrap();
        assert_eq!(image.resize(1, 4).unwrap().values(), [0, 50, 150, 200]);
        // 1 × 4 → 1 × 2: positions 0.5 and 2.5.
        let image = Image::new(1, 1, 4, vec![0, 100, 200, 40]).unwrap();
        assert_eq!(image.resize(1, 2).unwrap().values(), [50, 120]);
        // Both axes, every channel: 2 × 2 → 4 × 4 corners keep their values.
        let image = sample(2, 2);
        let big = image.resize(4, 4).unwrap();
        assert_eq!((big.channels(), big.height(), big.width()), (3, 4, 4));
        for c in 0..3 {
            let plane = &big.values()[c * 16..(c + 1) * 16];
            let small = &image.values()[c * 4..(c + 1) * 4];
            assert_eq!([plane[0], plane[3], plane[12], plane[15]], small);
        }
        assert_eq!(image.resize(2, 2).unwrap(), image);
        assert!(image.resize(0, 2).is_err());
        let err = image.resize(1, 178_956_970).unwrap_err();
        assert!(err.contains("at most 65535 pixels a side"), "{err}");
    }

    #[test]
    fn bad_bytes_are_errors() {
        assert!(decode(b"not an image", ColorMode::Color).is_err());
        let png = sample(4, 4).encode(Encoding::Png).unwrap();
        for keep in [8, 20, png.len() / 2, png.len() - 5] {
            assert!(
                decode(&png[..keep], ColorMode::Color).is_err(),
                "{keep} bytes"
            );
        }
        let jpeg = sample(8, 8).encode(Encoding::Jpeg).unwrap();
        for keep in [2, 20, jpeg.len() / 3] {
            // A cut JPEG may decode with grey filler (as libjpeg warns and goes on), but must not panic.
            let _ = decode(&jpeg[..keep], ColorMode::Color);
        }
        assert!(Image::new(3, 2, 2, vec![0; 11]).is_err());
    }

    /// CRC-32 (PNG's), to forge chunk headers.
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    /// `png` with its IHDR claiming `height × width`.
    fn png_claiming(png: &[u8], height: u32, width: u32) -> Vec<u8> {
        let mut forged = png.to_vec();
        // Signature (8), length (4), "IHDR" (4), width, height, 5 more bytes, then the CRC of type + data.
        forged[16..20].copy_from_slice(&width.to_be_bytes());
        forged[20..24].copy_from_slice(&height.to_be_bytes());
        let crc = crc32(&forged[12..29]);
        forged[29..33].copy_from_slice(&crc.to_be_bytes());
        forged
    }

    #[test]
    fn headers_claiming_huge_images_are_refused_before_decoding() {
        let png = sample(4, 4).encode(Encoding::Png).unwrap();
        assert_eq!(
            decode(&png_claiming(&png, 4, 4), ColorMode::Color).unwrap(),
            sample(4, 4)
        );
        for mode in [ColorMode::Color, ColorMode::Gray, ColorMode::Native] {
            let err = decode(&png_claiming(&png, 60_000, 60_000), mode).unwrap_err();
            assert!(err.contains("60000 × 60000"), "{err}");
        }
        // A JPEG whose frame header (SOF0: marker, length, precision, height, width) claims 65000 × 65000.
        let mut jpeg = sample(8, 8).encode(Encoding::Jpeg).unwrap();
        let sof = jpeg.windows(2).position(|w| w == [0xff, 0xc0]).unwrap();
        jpeg[sof + 5..sof + 7].copy_from_slice(&65_000u16.to_be_bytes());
        jpeg[sof + 7..sof + 9].copy_from_slice(&65_000u16.to_be_bytes());
        let err = decode(&jpeg, ColorMode::Color).unwrap_err();
        assert!(err.contains("65000 × 65000"), "{err}");
    }

    #[test]
    fn the_limit_holds_for_the_image_made_not_only_the_one_decoded() {
        // A grey PNG of 100 × 100 decodes into 10 000 bytes, but as colour it makes 30 000: the limit is on the
        // image the caller gets too, not only on the decoder's output.
        let gray = Image::new(1, 100, 100, vec![7; 10_000]).unwrap();
        let png = gray.encode(Encoding::Png).unwrap();
        assert_eq!(decode_within(&png, ColorMode::Gray, 10_000).unwrap(), gray);
        assert_eq!(
            decode_within(&png, ColorMode::Native, 10_000).unwrap(),
            gray
        );
        let err = decode_within(&png, ColorMode::Color, 29_999).unwrap_err();
        assert!(
            err.contains("100 × 100") && err.contains("3 channels"),
            "{err}"
        );
        assert_eq!(
            decode_within(&png, ColorMode::Color, 30_000).unwrap(),
            gray.to_color()
        );
        // What the decoder itself holds counts too: an RGBA PNG decoded as grey.
        let rgba = Image::new(4, 10, 10, vec![9; 400]).unwrap();
        let png = rgba.encode(Encoding::Png).unwrap();
        assert!(decode_within(&png, ColorMode::Gray, 399).is_err());
        assert_eq!(
            decode_within(&png, ColorMode::Gray, 400)
                .unwrap()
                .values()
                .len(),
            100
        );
    }

    #[test]
    fn image_files_are_read_within_a_limit() {
        let dir = std::env::temp_dir().join(format!("crema-pixels-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("big.png");
        std::fs::write(&path, [0u8; 101]).unwrap();
        assert_eq!(read_file_within(&path, 101).unwrap().len(), 101);
        let err = read_file_within(&path, 100).unwrap_err().to_string();
        assert!(
            err.contains("big.png") && err.contains("more than 100 bytes"),
            "{err}"
        );
        // A file that never ends.
        if Path::new("/dev/zero").exists() {
            let err = read_file_within(Path::new("/dev/zero"), 1000).unwrap_err();
            assert!(err.to_string().contains("/dev/zero"), "{err}");
        }
        let err = read_file(&dir.join("missing.png")).unwrap_err().to_string();
        assert!(err.contains("missing.png"), "{err}");
    }

    #[test]
    fn encodings_by_name() {
        assert_eq!(Encoding::from_name("JPG"), Some(Encoding::Jpeg));
        assert_eq!(Encoding::from_name("jpeg"), Some(Encoding::Jpeg));
        assert_eq!(Encoding::from_name("png"), Some(Encoding::Png));
        assert_eq!(Encoding::from_name("bmp"), None);
    }
}
