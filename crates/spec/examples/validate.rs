//! Checks run specs (TOML) and prints what each one trains.
//!
//! ```sh
//! cargo run -p bigbatch-spec --example validate -- configs/*.toml
//! ```

#![allow(clippy::print_stdout)] // an example's output

use bigbatch_spec::RunSpec;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let paths: Vec<String> = std::env::args().skip(1).collect();
    if paths.is_empty() {
        return Err("give one or more TOML run specs, e.g. configs/you2020-lamb-mnist.toml".into());
    }
    for path in paths {
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        let spec: RunSpec = toml::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
        spec.validate().map_err(|e| format!("{path}: {e}"))?;
        let t = &spec.train;
        println!(
            "{path}: {} on {}, batch {}, {} at learning rate {}{}",
            spec.model(),
            spec.workload,
            t.batch_size,
            t.optimizer.method.name(),
            t.optimizer.learning_rate,
            if t.optimizer.is_layerwise() {
                ", layer-wise"
            } else {
                ""
            }
        );
    }
    Ok(())
}
