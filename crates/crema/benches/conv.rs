//! Convolution kernels and layers at the shapes of the timing nets (LeNet's conv2, a CaffeNet and an FCN
//! layer): patch gathering alone, the matrix product alone, and the layer's forward + backward; and LeNet's
//! first max pooling.
//! Run with `cargo bench -p crema --bench conv`.

use crema::layers::{convolution, pooling};
use crema::math::conv::{im2col, ConvShape};
use crema::math::{matmul, MatMut, MatRef, Threads};
use crema::proto::caffe::Phase;
use crema::proto::LayerParameter;
use crema::testing::uniform_blob;
use crema::{Blob, LayerContext};
use criterion::{criterion_group, criterion_main, Criterion};

struct Case {
    label: &'static str,
    input: [usize; 4],
    num_output: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
}

const CASES: [Case; 4] = [
    Case {
        label: "lenet_conv1_b64",
        input: [64, 1, 28, 28],
        num_output: 20,
        kernel: 5,
        stride: 1,
        pad: 0,
    },
    Case {
        label: "lenet_conv2_b64",
        input: [64, 20, 12, 12],
        num_output: 50,
        kernel: 5,
        stride: 1,
        pad: 0,
    },
    Case {
        label: "fcn_conv2_2_b4",
        input: [4, 128, 64, 64],
        num_output: 128,
        kernel: 3,
        stride: 1,
        pad: 1,
    },
    Case {
        label: "caffenet_conv1_b16",
        input: [16, 3, 227, 227],
        num_output: 96,
        kernel: 11,
        stride: 4,
        pad: 0,
    },
];

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("conv");
    group.sample_size(20);
    for case in CASES {
        let [n, ch, h, w] = case.input;
        let k = case.kernel;
        let shape = ConvShape::new(
            ch,
            &[h, w],
            &[k, k],
            &[case.stride; 2],
            &[case.pad; 2],
            &[1, 1],
        )
        .unwrap();
        let x = uniform_blob(&case.input, -1.0, 1.0, 1);
        let (positions, patch) = (shape.positions(), shape.patch_len());
        let mut cols = vec![0.0f32; n * positions * patch];
        group.bench_function(format!("{}/im2col", case.label), |b| {
            b.iter(|| im2col(Threads::All, &shape, x.data(), n, &mut cols))
        });
        let weights = uniform_blob(&[case.num_output, patch], -1.0, 1.0, 2);
        let mut out = vec![0.0f32; case.num_output * n * positions];
        group.bench_function(format!("{}/matmul", case.label), |b| {
            b.iter(|| {
                let cols = MatRef::new(&cols, patch, n * positions);
                let w = MatRef::new(weights.data(), case.num_output, patch);
                matmul(
                    MatMut::new(&mut out, case.num_output, n * positions),
                    w,
                    cols,
                    1.0,
                    0.0,
                );
            })
        });
        let text = format!(
            "convolution_param {{ num_output: {} kernel_size: {k} stride: {} pad: {} weight_filler {{ type: \"xavier\" }} }}",
            case.num_output, case.stride, case.pad
        );
        let param: LayerParameter = crema::proto::text::parse(&text, "bench").unwrap();
        let mut ctx = LayerContext {
            param: &param,
            phase: Phase::Train,
            search_dirs: &[],
            rng: crema::math::rng(0, 0),
        };
        let mut layer = convolution::create(&mut ctx).unwrap();
        let mut x = x.clone();
        let mut y = Blob::default();
        layer.setup(&[&x], &mut [&mut y]).unwrap();
        layer.reshape(&[&x], &mut [&mut y]).unwrap();
        y.diff_mut().fill(0.5);
        group.bench_function(format!("{}/forward", case.label), |b| {
            b.iter(|| layer.forward(&[&x], &mut [&mut y]).unwrap())
        });
        group.bench_function(format!("{}/backward", case.label), |b| {
            b.iter(|| layer.backward(&[&y], &[true], &mut [&mut x]).unwrap())
        });
    }
    let param: LayerParameter = crema::proto::text::parse(
        "pooling_param { pool: MAX kernel_size: 2 stride: 2 }",
        "bench",
    )
    .unwrap();
    let mut ctx = LayerContext {
        param: &param,
        phase: Phase::Train,
        search_dirs: &[],
        rng: crema::math::rng(0, 0),
    };
    let mut pool = pooling::create(&mut ctx).unwrap();
    let mut x = uniform_blob(&[64, 20, 24, 24], -1.0, 1.0, 3);
    let mut y = Blob::default();
    pool.setup(&[&x], &mut [&mut y]).unwrap();
    pool.reshape(&[&x], &mut [&mut y]).unwrap();
    y.diff_mut().fill(0.5);
    group.bench_function("lenet_pool1_b64/forward", |b| {
        b.iter(|| pool.forward(&[&x], &mut [&mut y]).unwrap())
    });
    group.bench_function("lenet_pool1_b64/backward", |b| {
        b.iter(|| pool.backward(&[&y], &[true], &mut [&mut x]).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
