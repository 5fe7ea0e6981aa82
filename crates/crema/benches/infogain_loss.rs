//! InfogainLoss forward + backward at the shapes of ../shared/anchors.md (Caffe and PyTorch figures there).
//! H comes from a `source` file, as in Caffe's timings. Run with `cargo bench -p crema --bench infogain_loss`.

use crema::layers::infogain_loss;
use crema::proto::caffe::Phase;
use crema::proto::LayerParameter;
use crema::testing::uniform_blob;
use crema::{Blob, LayerContext};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("infogain_loss_forward_backward");
    // A dense random H (the general case), and a diagonal one (class weights, the common case).
    for (label, shape, diagonal) in [
        ("256x10", vec![256, 10], false),
        ("1024x100", vec![1024, 100], false),
        ("4096x1000", vec![4096, 1000], false),
        ("8x21x128x128", vec![8, 21, 128, 128], false),
        ("8x21x128x128_diagonal_H", vec![8, 21, 128, 128], true),
    ] {
        let classes = shape[1];
        let mut scores = uniform_blob(&shape, -4.0, 4.0, 1);
        let mut label_shape = shape.clone();
        label_shape.remove(1);
        let mut labels = uniform_blob(&label_shape, 0.0, classes as f32, 2);
        labels.data_mut().iter_mut().for_each(|v| *v = v.floor());
        let mut h = uniform_blob(&[classes, classes], 0.0, 1.0, 3);
        if diagonal {
            for (i, v) in h.data_mut().iter_mut().enumerate() {
                if i % (classes + 1) != 0 {
                    *v = 0.0;
                }
            }
        }
        let h_path = std::env::temp_dir().join(format!("crema-bench-H_{label}.npy"));
        let h_array =
            crema::io::Array::from_f32(vec![classes, classes], h.data().to_vec()).unwrap();
        crema::io::write_npy(&h_path, &h_array).unwrap();
        let text = format!("infogain_loss_param {{ source: \"{}\" }}", h_path.display());
        let param: LayerParameter = crema::proto::text::parse(&text, "bench").unwrap();
        let mut ctx = LayerContext {
            param: &param,
            phase: Phase::Train,
            search_dirs: &[],
            rng: crema::math::rng(0, 0),
        };
        let mut layer = infogain_loss::create(&mut ctx).unwrap();
        let mut loss = Blob::default();
        let bottoms = [&scores, &labels];
        layer.setup(&bottoms, &mut [&mut loss]).unwrap();
        layer.reshape(&bottoms, &mut [&mut loss]).unwrap();
        loss.diff_mut()[0] = 1.0;
        group.bench_function(BenchmarkId::from_parameter(label), |b| {
            b.iter(|| {
                layer
                    .forward(&[&scores, &labels], &mut [&mut loss])
                    .unwrap();
                layer
                    .backward(&[&loss], &[true, false], &mut [&mut scores, &mut labels])
                    .unwrap();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
