//! Caffe's own prototxt files, read from a Caffe checkout: runs only when `CAFFE_REPO` names the git directory of
//! one (a bare repository, a work tree's `.git`, or the work tree itself; files are read from its HEAD with
//! `git show`, so no work tree is needed), e.g.
//!
//! ```text
//! CAFFE_REPO=/path/to/caffe/.git cargo test -p crema-proto --test caffe_repo -- --nocapture
//! ```
//!
//! Every `.prototxt` under `models/` and `examples/` must parse (as a SolverParameter when its name contains
//! "solver", else as a NetParameter), print and parse back to an equal message with stable printing, survive a
//! binary encode/decode, and upgrade without error (nets, solvers, and the nets written inline in solvers).
//! Without `CAFFE_REPO` the test prints that it was skipped and passes.

use std::fmt::Debug;
use std::path::PathBuf;
use std::process::Command;

use crema_proto::{binary, text, upgrade, CaffeMessage, NetParameter, SolverParameter};

fn git(repo: &PathBuf, args: &[&str]) -> Result<Vec<u8>, String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .output()
        .map_err(|e| format!("running git: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(output.stdout)
}

/// parse(print(x)) == x, stable printing, decode(encode(x)) == x.
fn round_trip<M: CaffeMessage + PartialEq + Debug>(message: &M, what: &str) -> Result<(), String> {
    let printed = text::print(message);
    let reparsed: M =
        text::parse(&printed, &format!("{what} (printed)")).map_err(|e| e.to_string())?;
    if reparsed != *message {
        return Err("parse(print(x)) differs from x".into());
    }
    if text::print(&reparsed) != printed {
        return Err("printing is not stable".into());
    }
    let decoded: M = binary::decode(&binary::encode(message), what).map_err(|e| e.to_string())?;
    if decoded != *message {
        return Err("decode(encode(x)) differs from x".into());
    }
    Ok(())
}

fn check_net(net: &NetParameter, what: &str) -> Result<(), String> {
    round_trip(net, what)?;
    let mut upgraded = net.clone();
    upgrade::upgrade_net(&mut upgraded, what).map_err(|e| format!("upgrade: {e}"))?;
    if !upgraded.layers.is_empty() || !upgraded.input.is_empty() {
        return Err("deprecated fields left after the upgrade".into());
    }
    round_trip(&upgraded, &format!("{what} (upgraded)")).map_err(|e| format!("upgraded: {e}"))
}

fn check_file(path: &str, source: &str) -> Result<String, String> {
    if path.rsplit('/').next().unwrap_or(path).contains("solver") {
        let solver: SolverParameter = text::parse(source, path).map_err(|e| e.to_string())?;
        round_trip(&solver, path)?;
        let mut upgraded = solver.clone();
        upgrade::upgrade_solver(&mut upgraded, path).map_err(|e| format!("upgrade: {e}"))?;
        let inline: Vec<&NetParameter> = solver
            .net_param
            .iter()
            .chain(solver.train_net_param.iter())
            .chain(solver.test_net_param.iter())
            .collect();
        for (index, net) in inline.iter().enumerate() {
            check_net(net, &format!("{path} inline net #{index}"))
                .map_err(|e| format!("inline net #{index}: {e}"))?;
        }
        Ok(format!(
            "solver, type {:?}, {} inline nets",
            upgraded.r#type(),
            inline.len()
        ))
    } else {
        let net: NetParameter = text::parse(source, path).map_err(|e| e.to_string())?;
        check_net(&net, path)?;
        let form = if !net.layers.is_empty() {
            "V1 layers"
        } else {
            "layers"
        };
        Ok(format!(
            "net, {} {form}",
            net.layer.len() + net.layers.len()
        ))
    }
}

#[test]
fn caffe_models_and_examples_parse_round_trip_and_upgrade() {
    let Some(repo) = std::env::var_os("CAFFE_REPO").map(PathBuf::from) else {
        println!(
            "caffe_repo: skipped (set CAFFE_REPO to a Caffe checkout's git directory to run it)"
        );
        return;
    };
    let listing =
        git(&repo, &["ls-tree", "-r", "--name-only", "HEAD"]).unwrap_or_else(|e| panic!("{e}"));
    let listing = String::from_utf8(listing).expect("git prints UTF-8 paths");
    let paths: Vec<&str> = listing
        .lines()
        .filter(|path| {
            (path.starts_with("models/") || path.starts_with("examples/"))
                && path.ends_with(".prototxt")
        })
        .collect();
    assert!(
        !paths.is_empty(),
        "no .prototxt under models/ or examples/ in {}",
        repo.display()
    );

    let mut failures = Vec::new();
    let (mut nets, mut solvers) = (0, 0);
    for path in &paths {
        let result = git(&repo, &["show", &format!("HEAD:{path}")]).and_then(|bytes| {
            let source = String::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
            check_file(path, &source)
        });
        match result {
            Ok(summary) => {
                if summary.starts_with("solver") {
                    solvers += 1;
                } else {
                    nets += 1;
                }
                println!("ok    {path}: {summary}");
            }
            Err(error) => {
                println!("FAIL  {path}: {error}");
                failures.push(format!("{path}: {error}"));
            }
        }
    }
    println!(
        "caffe_repo: {} files ({nets} nets, {solvers} solvers) passed, {} failed",
        nets + solvers,
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} files failed:\n{}",
        failures.len(),
        paths.len(),
        failures.join("\n")
    );
}
