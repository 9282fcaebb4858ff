//! Training, shared by the CLI and the browser: losses with HF's semantics, the learning-rate
//! schedule, and an async [`Trainer`] whose `step` yields an [`Event`] (only the logged loss is
//! read back, asynchronously, so it runs on WebGPU too).

pub mod loss;
pub mod schedule;
pub mod trainer;

pub use schedule::Schedule;
pub use trainer::{Batch, Event, TrainConfig, Trainer};
