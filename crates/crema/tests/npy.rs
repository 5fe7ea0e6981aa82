//! .npy reading and writing against fixtures made by real numpy (tests/fixtures/npy/make_fixtures.py).

use std::path::{Path, PathBuf};

use crema::io::npy::{npy_bytes, read_npy, read_npy_bytes, write_npy};
use crema::io::{read_array, Array, ArrayData, DType};
use crema::Error;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/npy")
        .join(name)
}

fn read(name: &str) -> Array {
    read_npy(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn f32s(array: &Array) -> &[f32] {
    match array.data() {
        ArrayData::F32(values) => values,
        ArrayData::F64(_) => panic!("expected f32 values"),
    }
}

fn f64s(array: &Array) -> &[f64] {
    match array.data() {
        ArrayData::F64(values) => values,
        ArrayData::F32(_) => panic!("expected f64 values"),
    }
}

/// The error reading fixture `name`, checked to be an `Error::Npy` naming the file.
fn npy_error(name: &str) -> String {
    let path = fixture(name);
    match read_npy(&path) {
        Err(Error::Npy { origin, reason }) => {
            assert_eq!(origin, path.display().to_string());
            reason
        }
        other => panic!("{name}: expected an Npy error, got {other:?}"),
    }
}

#[test]
fn reads_float32_and_float64() {
    let f4 = read("f4_4x4.npy");
    assert_eq!((f4.shape(), f4.dtype()), (&[4usize, 4][..], DType::F32));
    let values = f32s(&f4);
    assert_eq!(values[0], -5.5f32 / 7.0);
    assert_eq!(values[1], f32::INFINITY);
    assert_eq!(values[15].to_bits(), (-0.0f32).to_bits());

    let f8 = read("f8_2x3.npy");
    assert_eq!((f8.shape(), f8.dtype()), (&[2usize, 3][..], DType::F64));
    assert_eq!(
        f64s(&f8),
        &[0.1, -2.5, 1e-300, 1e300, std::f64::consts::PI, -0.0]
    );
}

#[test]
fn reads_any_rank() {
    let one = read("f4_1d.npy");
    assert_eq!(
        (one.shape(), f32s(&one)),
        (&[5usize][..], &[1.5, -2.0, 3.25, 0.0, 1e-3][..])
    );
    let zero = read("f8_0d.npy");
    assert_eq!((zero.shape(), f64s(&zero)), (&[][..], &[2.75][..]));
    let three = read("f4_3d.npy");
    assert_eq!(three.shape(), &[2, 3, 4]);
    assert_eq!(
        f32s(&three),
        (0..24).map(|i| i as f32 * 0.5).collect::<Vec<_>>()
    );
    let empty = read("f4_empty.npy");
    assert_eq!((empty.shape(), empty.len()), (&[0usize, 3][..], 0));
    assert_eq!(read("f4_full_pad.npy").shape()[13], 100);
}

#[test]
fn reads_versions_2_and_3() {
    let v2 = read("f4_v2.npy");
    assert_eq!(
        (v2.shape(), f32s(&v2)),
        (&[2usize, 2][..], &[1.0, 2.0, 3.0, 4.0][..])
    );
    let v3 = read("f8_v3.npy");
    assert_eq!(
        (v3.shape(), f64s(&v3)),
        (&[3usize][..], &[-1.0, 0.5, 8.0][..])
    );
}

#[test]
fn converts_big_endian() {
    let f4 = read("f4_be.npy");
    assert_eq!(
        (f4.dtype(), f32s(&f4)),
        (DType::F32, &[1.5, -2.0, 3.0, 1e-3][..])
    );
    let f8 = read("f8_be.npy");
    assert_eq!(
        (f8.dtype(), f64s(&f8)),
        (DType::F64, &[0.1, -1e200, 7.0][..])
    );
    assert_eq!(f32s(&read("i4_be.npy")), &[1.0, -2.0, 16_777_216.0]);
    assert_eq!(f32s(&read("i2_be.npy")), &[-300.0, 300.0]);
}

#[test]
fn reads_integers_and_bools_as_float32() {
    let labels = read("i8_labels.npy");
    assert_eq!(labels.dtype(), DType::F32);
    assert_eq!(
        f32s(&labels),
        &[0.0, 1.0, 2.0, 9.0, -1.0, 16_777_216.0, -16_777_216.0]
    );
    let u1 = read("u1.npy");
    assert_eq!(
        (u1.shape(), f32s(&u1)),
        (&[2usize, 3][..], &[0.0, 1.0, 2.0, 127.0, 128.0, 255.0][..])
    );
    assert_eq!(f32s(&read("bool.npy")), &[1.0, 0.0, 1.0, 1.0]);
    for t in ["i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8"] {
        let array = read(&format!("int_{t}.npy"));
        assert_eq!(
            (array.dtype(), f32s(&array)),
            (DType::F32, &[0.0, 1.0, 100.0, 7.0][..]),
            "{t}"
        );
    }
}

#[test]
fn integers_beyond_2_pow_24_are_errors_naming_index_and_value() {
    let reason = npy_error("i8_too_big.npy");
    assert!(
        reason.contains("16777217 at index 4 (element [1, 1])"),
        "{reason}"
    );
    let reason = npy_error("u8_too_big.npy");
    assert!(
        reason.contains("9223372036854775808 at index 1"),
        "{reason}"
    );
    // The error's Display names the file too.
    let shown = read_npy(&fixture("i8_too_big.npy"))
        .unwrap_err()
        .to_string();
    assert!(shown.contains("i8_too_big.npy"), "{shown}");
}

#[test]
fn unsupported_arrays_are_clear_errors() {
    let fortran = npy_error("f4_fortran.npy");
    assert!(
        fortran.contains("Fortran order") && fortran.contains("np.ascontiguousarray"),
        "{fortran}"
    );
    let cases = [
        ("f2.npy", "'<f2'"),
        ("object.npy", "'|O'"),
        ("complex.npy", "'<c8'"),
        ("unicode.npy", "'<U2'"),
        ("structured.npy", "[('a', '<f4'), ('b', '<i4')]"),
    ];
    for (name, dtype) in cases {
        let reason = npy_error(name);
        assert!(
            reason.contains(dtype) && reason.contains("not supported"),
            "{name}: {reason}"
        );
    }
}

#[test]
fn writes_exactly_what_numpy_writes() {
    for name in [
        "f4_4x4.npy",
        "f8_2x3.npy",
        "f4_1d.npy",
        "f8_0d.npy",
        "f4_3d.npy",
        "f4_empty.npy",
        "f4_full_pad.npy",
    ] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        assert_eq!(npy_bytes(&read(name)), bytes, "{name}");
    }
}

#[test]
fn write_npy_round_trips_through_a_file() {
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("npy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("h.npy");
    let array = Array::from_f64(vec![2, 2], vec![0.1, 0.2, 0.3, 1e-310]).unwrap();
    write_npy(&path, &array).unwrap();
    assert_eq!(read_npy(&path).unwrap(), array);
    assert_eq!(read_array(&path).unwrap(), array);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_files_are_io_errors() {
    assert!(matches!(
        read_npy(&fixture("no_such_file.npy")),
        Err(Error::Io { .. })
    ));
}

#[test]
fn every_truncation_is_an_error() {
    for name in [
        "f4_4x4.npy",
        "f8_v3.npy",
        "i8_labels.npy",
        "f8_0d.npy",
        "structured.npy",
    ] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        for len in 0..bytes.len() {
            match read_npy_bytes(&bytes[..len], name) {
                Err(Error::Npy { origin, .. }) => assert_eq!(origin, name),
                other => panic!("{name} cut to {len} bytes: {other:?}"),
            }
        }
    }
    // The empty array's data is empty: cutting into its header is an error all the same.
    let bytes = std::fs::read(fixture("f4_empty.npy")).unwrap();
    assert!((0..bytes.len()).all(|len| read_npy_bytes(&bytes[..len], "x").is_err()));
}

#[test]
fn trailing_bytes_are_an_error() {
    let mut bytes = std::fs::read(fixture("f4_1d.npy")).unwrap();
    bytes.extend_from_slice(&[0; 4]);
    let Err(Error::Npy { reason, .. }) = read_npy_bytes(&bytes, "x") else {
        panic!()
    };
    assert!(
        reason.contains("needs 20 data bytes, but the file has 24"),
        "{reason}"
    );
}

/// A tiny file whose header claims a huge shape: a plain error, with nothing allocated for the claim.
#[test]
fn huge_shapes_on_tiny_files_are_errors() {
    let bytes = std::fs::read(fixture("f4_1d.npy")).unwrap();
    let cases = [
        (
            "(1099511627776,)",
            "needs 4398046511104 data bytes, but the file has 20",
        ),
        (
            "(4294967296, 4294967296, 4294967296)",
            "more elements than fit in memory",
        ),
        ("(4611686018427387904,)", "more bytes than fit in memory"),
    ];
    for (shape, wanted) in cases {
        // f4_1d.npy's 20 data bytes under a header claiming `shape`.
        let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}\n");
        let mut file = b"\x93NUMPY\x01\x00".to_vec();
        file.extend_from_slice(&(dict.len() as u16).to_le_bytes());
        file.extend_from_slice(dict.as_bytes());
        file.extend_from_slice(&bytes[bytes.len() - 20..]);
        let Err(Error::Npy { reason, .. }) = read_npy_bytes(&file, "x") else {
            panic!("{shape}")
        };
        assert!(reason.contains(wanted), "{shape}: {reason}");
    }
}

#[test]
fn header_length_beyond_the_file_is_an_error() {
    let mut bytes = std::fs::read(fixture("f4_v2.npy")).unwrap();
    bytes[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    let Err(Error::Npy { reason, .. }) = read_npy_bytes(&bytes, "x") else {
        panic!()
    };
    assert!(reason.contains("4294967295 bytes"), "{reason}");
}
