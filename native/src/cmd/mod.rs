//! One module per verb.

mod bench;
mod demo;
mod demo_data;
mod eval;
mod infer;
mod inspect;
mod merge;
mod pretrain;
mod score;
mod sweep;
pub mod train;

use crate::cli::{Cli, Command};

/// Runs the chosen verb.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Infer(a) => infer::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Merge(a) => merge::run(a),
        Command::Train(a) => train::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Score(a) => score::run(a),
        Command::Demo(a) => demo::run(a),
        Command::DemoData(a) => demo_data::run(a),
        Command::Pretrain(a) => pretrain::run(a),
        Command::Sweep(a) => sweep::run(a),
        Command::Bench(a) => bench::run(a),
    }
}
