//! The command line (clap derive). One verb per file under `cmd/`.

use clap::{Args, Parser, Subcommand};
use normtune_core::device::DeviceChoice;
use std::path::PathBuf;

/// Fine-tune and run medical vision-language models (LayerNorm tuning first).
#[derive(Debug, Parser)]
#[command(name = "normtune", version, about)]
pub struct Cli {
    /// Verb.
    #[command(subcommand)]
    pub command: Command,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Answer a question about an image, write a report for it, or classify it.
    Infer(InferArgs),
    /// Print a model's architecture, parameter counts per component and config.
    Inspect(InspectArgs),
    /// Fold an adapter into the base weights: write a plain HF model folder.
    Merge(MergeArgs),
    /// Fine-tune with a PEFT method from a TOML run config, then evaluate and save the adapter.
    Train(TrainArgs),
}

/// Options every verb that runs a model takes.
#[derive(Debug, Args)]
pub struct DeviceArgs {
    /// cpu (burn flex), gpu (wgpu) or auto (wgpu when a hardware adapter exists, else cpu).
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
}

/// `normtune infer`.
#[derive(Debug, Args)]
pub struct InferArgs {
    /// HF model folder (config.json, model.safetensors, tokenizer, preprocessor_config.json).
    #[arg(long)]
    pub model: PathBuf,
    /// Image file (PNG or JPEG).
    #[arg(long)]
    pub image: PathBuf,
    /// Question (VQA models); leave out to generate a report with a captioning model.
    #[arg(long)]
    pub question: Option<String>,
    /// HF peft adapter folder to apply (adapter_config.json + adapter_model.safetensors).
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// Rank these comma-separated candidate answers instead of generating (closed-set mode).
    #[arg(long, value_delimiter = ',')]
    pub candidates: Option<Vec<String>>,
    /// Beams for beam search (1 = greedy).
    #[arg(long, default_value_t = 3)]
    pub num_beams: usize,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 10)]
    pub max_new_tokens: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// `normtune inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// HF model folder (config.json alone is enough: the architecture is then counted from it).
    #[arg(long)]
    pub model: PathBuf,
    /// PEFT method or placement to report on, e.g. `layernorm` or
    /// `vision=layernorm,text_encoder=layernorm,decoder=frozen`.
    #[arg(long, conflicts_with = "peft_config")]
    pub peft: Option<String>,
    /// PEFT config file (JSON: `placement`, `default_method`, `modules_to_save`).
    #[arg(long)]
    pub peft_config: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// `normtune merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Base HF model folder.
    #[arg(long)]
    pub model: PathBuf,
    /// peft adapter folder.
    #[arg(long)]
    pub adapter: PathBuf,
    /// Output folder (must not exist yet; written atomically).
    #[arg(long)]
    pub out: PathBuf,
}

/// `normtune train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Run config (TOML): model, data, peft, train, batch_size, epochs, out.
    #[arg(long)]
    pub config: PathBuf,
    /// Overrides, e.g. `train.lr=3e-3 epochs=5 peft.default_method=lora`.
    pub overrides: Vec<String>,
    #[command(flatten)]
    pub device: DeviceArgs,
}
