//! `crema train` as a user runs it: Caffe-shaped logs, the same weights from the same solver, fine-tuning from
//! weights, resuming from a snapshot, and Ctrl-C leaving a loadable snapshot.

mod common;

use common::crema;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A folder holding the shared training set and its nets, with the softmax solver set to `max_iter`.
fn workspace(name: &str, max_iter: u32) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("crema-train-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/caffe-reference/train");
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
    }
    let solver = std::fs::read_to_string(dir.join("solver_softmax.prototxt"))
        .unwrap()
        .replace("max_iter: 2000", &format!("max_iter: {max_iter}"))
        .replace("test_interval: 500", "test_interval: 100");
    std::fs::write(dir.join("solver_softmax.prototxt"), solver).unwrap();
    dir
}

#[test]
fn the_same_solver_twice_gives_the_same_weights_and_caffes_log_lines() {
    let (a, b) = (workspace("twice-a", 200), workspace("twice-b", 200));
    for dir in [&a, &b] {
        let out = crema(&["train", "--solver", "solver_softmax.prototxt"], dir);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let model = "mlp64_softmax_iter_200.caffemodel";
    assert_eq!(
        std::fs::read(a.join(model)).unwrap(),
        std::fs::read(b.join(model)).unwrap()
    );
    let log = String::from_utf8_lossy(
        &crema(
            &["train", "--solver", "solver_softmax.prototxt", "--no-plot"],
            &a,
        )
        .stderr,
    )
    .into_owned();
    for line in [
        "Iteration 0, Testing net (#0)",
        "    Test net output #0: accuracy = ",
        "Iteration 100, loss = ",
        "    Train net output #0: loss = ",
        "Iteration 100, lr = 0.01",
        "Snapshotting to binary proto file mlp64_softmax_iter_200.caffemodel",
        "Optimization Done.",
    ] {
        assert!(log.contains(line), "missing {line:?} in:\n{log}");
    }
    assert!(a.join("mlp64_softmax_training.svg").exists());
}

#[test]
fn fine_tuning_and_resuming() {
    let dir = workspace("resume", 100);
    assert!(crema(
        &["train", "--solver", "solver_softmax.prototxt", "--no-plot"],
        &dir
    )
    .status
    .success());
    let out = crema(
        &[
            "train",
            "--solver",
            "solver_softmax.prototxt",
            "--no-plot",
            "--weights",
            "mlp64_softmax_iter_100.caffemodel",
        ],
        &dir,
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && log.contains("Copied weights of 2 layers"),
        "{log}"
    );

    let solver = std::fs::read_to_string(dir.join("solver_softmax.prototxt")).unwrap();
    std::fs::write(
        dir.join("solver_softmax.prototxt"),
        solver.replace("max_iter: 100", "max_iter: 150"),
    )
    .unwrap();
    let out = crema(
        &[
            "train",
            "--solver",
            "solver_softmax.prototxt",
            "--no-plot",
            "--snapshot",
            "mlp64_softmax_iter_100.solverstate",
        ],
        &dir,
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success()
            && log.contains("Resuming from mlp64_softmax_iter_100.solverstate at iteration 100"),
        "{log}"
    );
    assert!(dir.join("mlp64_softmax_iter_150.caffemodel").exists());

    let both = crema(
        &[
            "train",
            "--solver",
            "solver_softmax.prototxt",
            "--weights",
            "a.caffemodel",
            "--snapshot",
            "b.solverstate",
        ],
        &dir,
    );
    assert!(String::from_utf8_lossy(&both.stderr).contains("not both"));
}

#[cfg(unix)]
#[test]
fn ctrl_c_snapshots_then_stops() {
    let dir = workspace("sigint", 100_000_000);
    let mut child = Command::new(env!("CARGO_BIN_EXE_crema"))
        .args(["train", "--solver", "solver_softmax.prototxt", "--no-plot"])
        .current_dir(&dir)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Read the log as it comes (a full pipe would block the trainer), and interrupt once training runs.
    let stderr = child.stderr.take().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut log = String::new();
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
            let line = line.unwrap_or_default();
            let _ = sender.send(line.clone());
            log.push_str(&line);
            log.push('\n');
        }
        log
    });
    let started = Instant::now();
    loop {
        let line = receiver
            .recv_timeout(Duration::from_secs(30))
            .expect("training starts and logs");
        if line.starts_with("Iteration 200, loss") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "training did not reach iteration 200"
        );
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "crema did not stop after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(receiver);
    let log = reader.join().unwrap();
    assert!(exit.success(), "{log}");
    assert!(log.contains("Stopping at iteration"), "{log}");
    let state = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "solverstate"))
        .expect("a solverstate was written");
    let model = state.with_extension("caffemodel");
    let (net, _) = crema::proto::files::read_net_binary(&model).unwrap();
    assert!(net
        .layer
        .iter()
        .any(|l| l.name() == "ip1" && l.blobs.len() == 2));
    let saved: crema::proto::SolverState = crema::proto::files::read_binary(&state).unwrap();
    assert!(saved.iter() > 0);
    assert!(!dir.read_dir().unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains(".tmp")));
}
