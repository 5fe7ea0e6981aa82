//! Training with the solver on the shared imbalanced dataset (tests/fixtures/caffe-reference/train): the same
//! seed gives the same weights, a resumed run ends exactly where an uninterrupted one does, and 2000 iterations
//! reach Caffe's balanced accuracy.

use std::path::{Path, PathBuf};

use crema::proto::{binary, files, SolverParameter};
use crema::solver::{Solver, SolverLog, SolverOptions};

struct Quiet;

impl SolverLog for Quiet {
    fn line(&mut self, _text: &str) {}
}

fn train_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/caffe-reference/train")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("crema-training-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The shared solver, snapshotting under `dir`, with `max_iter` iterations and no periodic tests.
fn solver(file: &str, dir: &Path, max_iter: i32) -> Solver {
    let path = train_dir().join(file);
    let (mut param, _): (SolverParameter, _) = files::read_solver_text(&path).unwrap();
    param.max_iter = Some(max_iter);
    param.test_interval = Some(0);
    param.snapshot_after_train = Some(false);
    param.snapshot_prefix = Some(dir.join("run").display().to_string());
    let options = SolverOptions {
        solver_path: Some(path),
        ..Default::default()
    };
    Solver::new(param, &options).unwrap()
}

fn weights(solver: &Solver) -> Vec<u8> {
    binary::encode(&solver.net().to_proto(false))
}

#[test]
fn the_same_seed_gives_the_same_weights() {
    let dir = temp_dir("determinism");
    let mut first = solver("solver_infogain.prototxt", &dir, 300);
    first.solve(&mut Quiet).unwrap();
    let mut second = solver("solver_infogain.prototxt", &dir, 300);
    second.solve(&mut Quiet).unwrap();
    assert_eq!(weights(&first), weights(&second));
}

#[test]
fn a_resumed_run_ends_exactly_where_an_uninterrupted_one_does() {
    let dir = temp_dir("resume");
    let mut straight = solver("solver_softmax.prototxt", &dir, 400);
    straight.solve(&mut Quiet).unwrap();

    let mut first_half = solver("solver_softmax.prototxt", &dir, 400);
    first_half.step(200, &mut Quiet).unwrap();
    let (_, state) = first_half.snapshot(&mut Quiet).unwrap();
    drop(first_half);
    let mut resumed = solver("solver_softmax.prototxt", &dir, 400);
    resumed.restore(&state).unwrap();
    assert_eq!(resumed.iter(), 200);
    resumed.solve(&mut Quiet).unwrap();
    assert_eq!(weights(&resumed), weights(&straight));
}

/// Balanced accuracy of the trained net over the whole balanced test set (20 batches of 100).
fn balanced_accuracy(solver: &Solver) -> f64 {
    let mut test = crema::Net::new(
        &files::read_net_text(&train_dir().join("net_softmax.prototxt"))
            .unwrap()
            .0,
        &crema::proto::NetState::default(),
        &crema::NetOptions {
            search_dirs: vec![train_dir()],
            ..Default::default()
        },
    )
    .unwrap();
    test.copy_params_from(solver.net()).unwrap();
    let (mut correct, mut total) = ([0usize; 10], [0usize; 10]);
    for _ in 0..20 {
        test.forward().unwrap();
        let scores = test.blob("ip2").unwrap().data().to_vec();
        let labels = test.blob("label").unwrap().data().to_vec();
        for (row, &label) in scores.chunks(10).zip(&labels) {
            let predicted = (0..10).fold(0, |best, c| if row[c] > row[best] { c } else { best });
            total[label as usize] += 1;
            correct[label as usize] += usize::from(predicted == label as usize);
        }
    }
    (0..10)
        .map(|c| correct[c] as f64 / total[c] as f64)
        .sum::<f64>()
        / 10.0
}

#[test]
fn two_thousand_iterations_reach_caffes_balanced_accuracy() {
    let dir = temp_dir("accuracy");
    for (file, caffe) in [
        ("solver_softmax.prototxt", 0.655),
        ("solver_infogain.prototxt", 0.629),
    ] {
        let mut run = solver(file, &dir, 2000);
        run.solve(&mut Quiet).unwrap();
        let reached = balanced_accuracy(&run);
        eprintln!("{file}: balanced accuracy {reached:.4} after 2000 iterations (Caffe {caffe})");
        assert!(
            (reached - caffe).abs() <= 0.03,
            "{file}: balanced accuracy {reached:.3}, Caffe {caffe}"
        );
    }
}

#[test]
fn the_weights_do_not_depend_on_the_thread_count() {
    let dir = temp_dir("threads");
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut run = solver("solver_infogain.prototxt", &dir, 200);
            run.solve(&mut Quiet).unwrap();
            weights(&run)
        })
    };
    assert_eq!(run(1), run(2));
    assert_eq!(run(1), run(3));
}
