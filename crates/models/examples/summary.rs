//! Prints every model of `bigbatch-models` with its dataset, parameter count
//! and reference: `cargo run -p bigbatch-models --example summary`.

use bigbatch_models::{ModelKind, summary_table};

fn main() -> Result<(), bigbatch_models::Error> {
    let table = summary_table(&ModelKind::ALL)?;
    #[allow(clippy::print_stdout)] // an example's output is the point
    {
        print!("{table}");
    }
    Ok(())
}
