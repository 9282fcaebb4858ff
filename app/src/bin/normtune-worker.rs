//! The Web Worker that loads, tunes and runs models (see `normtune_app::worker`).

fn main() {
    normtune_app::run_constructors_once!();
    normtune_app::worker::start();
}
