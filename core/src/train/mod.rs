//! Training: losses, the learning-rate schedule, the async trainer (data order, checkpoints) and
//! evaluation, shared by the CLI and the browser.

pub mod adamw;
pub mod eval;
#[cfg(feature = "flex")]
mod in_backward;
pub mod loss;
#[cfg(feature = "flex")]
pub mod run;
pub mod schedule;
#[cfg(feature = "flex")]
pub mod spec;
pub mod synthetic;
pub mod trainer;

pub use eval::{Prediction, evaluate, predict, score};
#[cfg(feature = "flex")]
pub use run::{Files, Finished, Run, RunData, RunEvent, StepReport, load_batch};
pub use schedule::Schedule;
#[cfg(feature = "flex")]
pub use spec::{DataSpec, EvalSpec, OnMissing, RunSpec};
pub use trainer::{Batch, CHECKPOINT_FILES, Cursor, Event, Next, Plan, TrainConfig, Trainer};
