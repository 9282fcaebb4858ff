//! Training: losses, the learning-rate schedule, the async trainer (data order, checkpoints) and
//! evaluation, shared by the CLI and the browser.

pub mod adamw;
pub mod eval;
pub mod loss;
pub mod schedule;
#[cfg(feature = "flex")]
pub mod session;
pub mod trainer;

pub use eval::{Prediction, evaluate, predict, score};
pub use schedule::Schedule;
#[cfg(feature = "flex")]
pub use session::{Session, SessionConfig, StepReport, load_batch};
pub use trainer::{Batch, CHECKPOINT_FILES, Cursor, Event, Next, Plan, TrainConfig, Trainer};
