//! Fuzzes image decoding: JPEG/PNG bytes decoded in each colour mode (as files, as encoded Datums), resized,
//! converted, transformed and encoded again: `cargo +nightly fuzz run image_decode`. crema lets decoders hold up
//! to 512 MiB, so the allocation cap here is 640 MiB.
#![no_main]

use crema::data::pixels::{self, ColorMode, Encoding};
use crema::data::{datum, transform};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|bytes: &[u8]| {
    common::set_cap(640);
    let knob = common::knob(bytes);
    let mode = [ColorMode::Native, ColorMode::Color, ColorMode::Gray][(knob % 3) as usize];
    let _ = datum::pixels(&datum::encoded_datum(bytes.to_vec(), 1), mode);
    let Ok(image) = pixels::decode(bytes, mode) else {
        return;
    };
    assert_eq!(
        image.values().len(),
        image.channels() * image.height() * image.width()
    );
    let (h, w) = (
        1 + (knob >> 8) as usize % 48,
        1 + (knob >> 16) as usize % 48,
    );
    if let Ok(resized) = image.resize(h, w) {
        assert_eq!((resized.height(), resized.width()), (h, w));
    }
    let color = image.to_color();
    let _ = image.to_gray();
    let transformer = transform::Transformer::identity(crema::proto::caffe::Phase::Train);
    let view = transform::View::of_image(&color);
    if let Ok([c, h, w]) = transformer.output_shape(view.channels, view.height, view.width) {
        if c * h * w <= 1 << 22 {
            let mut out = vec![0.0; c * h * w];
            let _ = transformer.transform(view, &mut crema::math::rng(knob, 0), &mut out);
        }
    }
    if image.values().len() <= 1 << 20 {
        if let Ok(png) = image.encode(Encoding::Png) {
            let back =
                pixels::decode(&png, ColorMode::Native).expect("crema reads the PNG it wrote");
            assert_eq!(back, image, "a PNG written by crema reads back the same");
        }
        let _ = image.encode(Encoding::Jpeg);
    }
});
