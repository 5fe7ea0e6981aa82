//! Caffe's `Datum` records, the values of the LMDBs its Data layer reads: one image and its label each.
//!
//! A Datum holds its image one of three ways (field numbers as in Caffe's schema):
//!
//! - raw 8-bit pixels: `channels` (1), `height` (2), `width` (3), `data` (4) holding C × H × W bytes in CHW
//!   order (colour as BGR), `label` (5), `encoded` (7) false. This is what Caffe's `CVMatToDatum` writes.
//! - floats: the same sizes with `float_data` (6) instead of `data`.
//! - an encoded image: `data` holds a JPEG or PNG file, `encoded` is true, and the sizes are unset (Caffe's
//!   `convert_imageset --encoded` writes only `data`, `label` and `encoded`). It is decoded when read.
//!
//! [`image_datum`] makes a Datum from an image file as Caffe's `ReadImageToDatum` does; [`pixels()`] gives back
//! the image a Datum holds, decoding it when encoded.

use std::path::Path;

use crema_proto::Datum;

use super::pixels::{self, invalid, ColorMode, Encoding, Image};
use super::transform::{Values, View};
use crate::error::Result;

/// The image a Datum holds: its raw values, borrowed, or the image its encoded bytes decode to.
#[derive(Debug)]
pub enum DatumPixels<'a> {
    Raw(View<'a>),
    Decoded(Image),
}

impl DatumPixels<'_> {
    /// The image, to transform.
    pub fn view(&self) -> View<'_> {
        match self {
            DatumPixels::Raw(view) => *view,
            DatumPixels::Decoded(image) => View::of_image(image),
        }
    }
}

/// Decodes a Datum from the bytes of an LMDB value; the error says what is wrong (the caller names the key).
pub fn parse(bytes: &[u8]) -> std::result::Result<Datum, String> {
    crema_proto::binary::decode::<Datum>(bytes, "record")
        .map_err(|e| e.to_string().trim_start_matches("record: ").to_owned())
}

/// The image `datum` holds: an encoded one decoded in `mode` (Caffe decodes unchanged, [`ColorMode::Native`],
/// unless `force_color`/`force_gray` say otherwise), a raw one checked (its sizes against its values) and
/// borrowed.
pub fn pixels(datum: &Datum, mode: ColorMode) -> std::result::Result<DatumPixels<'_>, String> {
    let data = datum.data();
    if datum.encoded() {
        if data.is_empty() {
            return Err("an encoded record with no data".into());
        }
        return pixels::decode(data, mode).map(DatumPixels::Decoded);
    }
    let size = |name: &str, value: i32| {
        usize::try_from(value)
            .ok()
            .filter(|&v| v > 0)
            .ok_or_else(|| format!("{name} is {value}; a raw record needs positive sizes"))
    };
    let (c, h, w) = (
        size("channels", datum.channels())?,
        size("height", datum.height())?,
        size("width", datum.width())?,
    );
    let values = if !data.is_empty() {
        Values::U8(data)
    } else if !datum.float_data.is_empty() {
        Values::F32(&datum.float_data)
    } else {
        return Err(format!(
            "a raw record of {c} × {h} × {w} with neither data nor float_data"
        ));
    };
    let field = match values {
        Values::U8(_) => "data",
        Values::F32(_) => "float_data",
    };
    View::new(c, h, w, values)
        .map(DatumPixels::Raw)
        .map_err(|e| format!("{field}: {e} (channels × height × width)"))
}

/// A Datum holding `image` raw, with `label`, as Caffe's `CVMatToDatum` then `set_label` make it.
pub fn raw_datum(image: &Image, label: i32) -> Datum {
    let size = |v: usize| i32::try_from(v).unwrap_or(i32::MAX);
    Datum {
        channels: Some(size(image.channels())),
        height: Some(size(image.height())),
        width: Some(size(image.width())),
        data: Some(image.values().to_vec()),
        label: Some(label),
        float_data: Vec::new(),
        encoded: Some(false),
    }
}

/// A Datum holding an encoded image file's bytes, with `label` (no sizes, as Caffe writes it).
pub fn encoded_datum(bytes: Vec<u8>, label: i32) -> Datum {
    Datum {
        data: Some(bytes),
        label: Some(label),
        encoded: Some(true),
        ..Datum::default()
    }
}

/// Reads the image file at `path` into a Datum, as Caffe's `ReadImageToDatum`: decoded as colour (BGR) or
/// grey (`mode`), resized to `resize_height × resize_width` when both are positive, then stored raw, or
/// encoded when `encoding` is given. An encoded Datum keeps the file's own bytes when nothing changes them:
/// no size given and the file's extension naming `encoding` (`.jpg` and `.jpeg` both name JPEG); otherwise
/// the decoded image is encoded anew. Returns the Datum and the size of the image it holds (channels,
/// height, width: an encoded Datum does not say). Errors name the file.
pub fn image_datum(
    path: &Path,
    label: i32,
    (resize_height, resize_width): (usize, usize),
    mode: ColorMode,
    encoding: Option<Encoding>,
) -> Result<(Datum, [usize; 3])> {
    let bytes = pixels::read_file(path)?;
    let mut image = pixels::decode(&bytes, mode).map_err(|reason| invalid(path, reason))?;
    if resize_height > 0 && resize_width > 0 {
        image = image
            .resize(resize_height, resize_width)
            .map_err(|reason| invalid(path, reason))?;
    }
    let shape = [image.channels(), image.height(), image.width()];
    let Some(encoding) = encoding else {
        return Ok((raw_datum(&image, label), shape));
    };
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .and_then(Encoding::from_name);
    if resize_height == 0 && resize_width == 0 && extension == Some(encoding) {
        return Ok((encoded_datum(bytes, label), shape));
    }
    let encoded = image
        .encode(encoding)
        .map_err(|reason| invalid(path, reason))?;
    Ok((encoded_datum(encoded, label), shape))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::pixels::tests::sample;
    use prost::Message;

    #[test]
    fn a_raw_datum_has_caffes_bytes() {
        let image = Image::new(1, 2, 3, vec![1, 2, 3, 4, 5, 200]).unwrap();
        let bytes = raw_datum(&image, 7).encode_to_vec();
        // channels 1, height 2, width 3 (varints), data 4 (length-delimited), label 5, encoded 7 = false.
        let expected = [
            0x08, 1, 0x10, 2, 0x18, 3, 0x22, 6, 1, 2, 3, 4, 5, 200, 0x28, 7, 0x38, 0,
        ];
        assert_eq!(bytes, expected);
        let back = parse(&bytes).unwrap();
        let pixels = pixels(&back, ColorMode::Native).unwrap();
        let view = pixels.view();
        assert_eq!((view.channels, view.height, view.width), (1, 2, 3));
        assert!(matches!(view.values, Values::U8([1, 2, 3, 4, 5, 200])));

        // Label 0 is written (proto2 writes set fields), a negative label as a 10-byte varint.
        let bytes = raw_datum(&image, 0).encode_to_vec();
        assert_eq!(bytes[14..], [0x28, 0, 0x38, 0]);
        let bytes = raw_datum(&image, -1).encode_to_vec();
        assert_eq!(bytes[14..16], [0x28, 0xff]);
        assert_eq!(parse(&bytes).unwrap().label(), -1);
    }

    #[test]
    fn an_encoded_datum_has_caffes_bytes() {
        let bytes = encoded_datum(vec![0x89, b'P'], 3).encode_to_vec();
        assert_eq!(bytes, [0x22, 2, 0x89, b'P', 0x28, 3, 0x38, 1]);
    }

    #[test]
    fn float_data_is_field_6() {
        // channels 1, height 1, width 2, float_data (packed) [0.5, -2].
        let mut bytes = vec![0x08, 1, 0x10, 1, 0x18, 2, 0x32, 8];
        bytes.extend_from_slice(&0.5f32.to_le_bytes());
        bytes.extend_from_slice(&(-2.0f32).to_le_bytes());
        bytes.extend_from_slice(&[0x28, 4]);
        let datum = parse(&bytes).unwrap();
        assert_eq!(datum.float_data, [0.5, -2.0]);
        assert_eq!(datum.label(), 4);
        let pixels = pixels(&datum, ColorMode::Native).unwrap();
        assert!(matches!(pixels.view().values, Values::F32([0.5, -2.0])));
        // Unpacked floats (each with its own tag) are read too.
        let mut bytes = vec![0x08, 1, 0x10, 1, 0x18, 1, 0x35];
        bytes.extend_from_slice(&1.5f32.to_le_bytes());
        assert_eq!(parse(&bytes).unwrap().float_data, [1.5]);
    }

    #[test]
    fn records_that_do_not_fit_are_errors() {
        let image = Image::new(1, 2, 3, vec![1, 2, 3, 4, 5, 6]).unwrap();
        let mut datum = raw_datum(&image, 1);
        datum.width = Some(4);
        let err = pixels(&datum, ColorMode::Native).unwrap_err();
        assert!(
            err.contains("data: 6 values for an image of 1 × 2 × 4"),
            "{err}"
        );
        datum.width = Some(-3);
        assert!(pixels(&datum, ColorMode::Native)
            .unwrap_err()
            .contains("width is -3"));
        datum.width = Some(i32::MAX);
        datum.height = Some(i32::MAX);
        datum.channels = Some(i32::MAX);
        assert!(pixels(&datum, ColorMode::Native).is_err());
        let empty = Datum {
            channels: Some(1),
            height: Some(1),
            width: Some(1),
            ..Datum::default()
        };
        assert!(pixels(&empty, ColorMode::Native)
            .unwrap_err()
            .contains("neither"));
        let bad = encoded_datum(b"garbage".to_vec(), 0);
        assert!(pixels(&bad, ColorMode::Native).is_err());
        assert!(pixels(&encoded_datum(Vec::new(), 0), ColorMode::Native).is_err());

        // Truncated bytes.
        let bytes = raw_datum(&image, 1).encode_to_vec();
        for keep in [1, 7, 10, 13] {
            assert!(parse(&bytes[..keep]).is_err(), "{keep} bytes");
        }
    }

    #[test]
    fn image_files_become_datums_as_in_caffe() {
        let dir = std::env::temp_dir().join(format!("crema-datum-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let image = sample(4, 6);
        let png = image.encode(Encoding::Png).unwrap();
        let path = dir.join("a.png");
        std::fs::write(&path, &png).unwrap();

        let raw = image_datum(&path, 5, (0, 0), ColorMode::Color, None).unwrap();
        assert_eq!(raw, (raw_datum(&image, 5), [3, 4, 6]));
        let gray = image_datum(&path, 5, (0, 0), ColorMode::Gray, None).unwrap();
        assert_eq!(gray, (raw_datum(&image.to_gray(), 5), [1, 4, 6]));
        let small = image_datum(&path, 5, (2, 3), ColorMode::Color, None).unwrap();
        assert_eq!(
            small,
            (raw_datum(&image.resize(2, 3).unwrap(), 5), [3, 2, 3])
        );
        // Only one size given: no resize (Caffe resizes when both are given).
        let same = image_datum(&path, 5, (2, 0), ColorMode::Color, None).unwrap();
        assert_eq!(same, raw);

        // Encoded as PNG: the file's own bytes; as JPEG, or resized: encoded anew.
        let kept = image_datum(&path, 5, (0, 0), ColorMode::Color, Some(Encoding::Png)).unwrap();
        assert_eq!(kept, (encoded_datum(png.clone(), 5), [3, 4, 6]));
        let (jpeg, _) =
            image_datum(&path, 5, (0, 0), ColorMode::Color, Some(Encoding::Jpeg)).unwrap();
        assert!(jpeg.encoded() && jpeg.data().starts_with(&[0xff, 0xd8]));
        assert_eq!(jpeg.channels, None);
        let (resized, shape) =
            image_datum(&path, 5, (2, 3), ColorMode::Gray, Some(Encoding::Png)).unwrap();
        assert_eq!(shape, [1, 2, 3]);
        let decoded = pixels::decode(resized.data(), ColorMode::Native).unwrap();
        assert_eq!(decoded, image.to_gray().resize(2, 3).unwrap());

        let missing = image_datum(&dir.join("nope.png"), 0, (0, 0), ColorMode::Color, None);
        assert!(missing.unwrap_err().to_string().contains("nope.png"));
        std::fs::write(dir.join("bad.png"), b"\x89PNG\r\n\x1a\nshort").unwrap();
        let err = image_datum(&dir.join("bad.png"), 0, (0, 0), ColorMode::Color, None).unwrap_err();
        assert!(err.to_string().contains("bad.png"), "{err}");
    }
}
