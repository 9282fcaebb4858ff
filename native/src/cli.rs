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
    /// Predict a dataset split with a model (and adapter) and score it.
    Eval(EvalArgs),
    /// Score a predictions file against a reference file (JSONL joined on `id`).
    Score(ScoreArgs),
    /// Write a split of the built-in benchmark as a dataset folder (PNG + JSONL).
    DemoData(DemoDataArgs),
    /// LayerNorm-tune the built-in demo model on a shifted domain: zero-shot vs tuned accuracy.
    Demo(DemoArgs),
    /// Run a grid of PEFT methods / placements on the same data: results.csv, results.md, plots.
    Sweep(SweepArgs),
    /// Train the demo base model from scratch on the benchmark's source domain (f16 HF folder).
    Pretrain(PretrainArgs),
    /// Time training steps, answer latency and peak memory of a PEFT method on a model shape.
    Bench(BenchArgs),
}

/// `normtune bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// HF BLIP VQA folder; with only config.json (no weights) the model is initialised randomly.
    #[arg(long, value_parser = crate::fs::model_path, conflicts_with = "preset")]
    pub model: Option<PathBuf>,
    /// A built-in shape: tiny, small (ViT 6x384 + BERT 6x384 at 224), blip-base-224,
    /// blip-base-480 (HF BLIP-base / MISS), llava-smol (a small CLIP + SmolLM2-135M's
    /// decoder), llava-7b (LLaVA-1.5-7B's shape).
    #[arg(long)]
    pub preset: Option<String>,
    /// PEFT method (any `--peft` spec: layernorm, lora, full, ...).
    #[arg(long, default_value = "layernorm")]
    pub peft: String,
    /// Examples per step.
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Timed training steps (after the warm-up).
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Untimed warm-up steps.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Question length in tokens.
    #[arg(long, default_value_t = 16)]
    pub question_len: usize,
    /// Answer length in tokens (training target, start token included).
    #[arg(long, default_value_t = 6)]
    pub answer_len: usize,
    /// Timed greedy answers (after one warm-up answer).
    #[arg(long, default_value_t = 5)]
    pub answers: usize,
    /// Tokens each greedy answer decodes.
    #[arg(long, default_value_t = 10)]
    pub answer_tokens: usize,
    /// AdamW learning rate.
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f64,
    /// Seed of the random inputs and new PEFT weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Keep denormal floats (default: flush to zero, as the PyTorch reference does).
    #[arg(long)]
    pub keep_denormals: bool,
    /// LLaVA only: the language model's frozen weights kept in this dtype (`f16` or `bf16`), as
    /// a run's `train.frozen_dtype`.
    #[arg(long)]
    pub frozen_dtype: Option<normtune_core::models::walk::FrozenDtype>,
    /// Attention recomputes its probabilities in the backward pass instead of keeping them, as
    /// a run's `train.recompute_attention`.
    #[arg(long)]
    pub recompute_attention: bool,
    /// Train data-parallel over this many replicas of the device (as a run's `devices`
    /// listing it N times): each step's batch is split among them and they run concurrently.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub replicas: u64,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Instead of a model: time an N×N by N×N f32 matmul (the device's practical peak FLOP
    /// rate), or an M×K by K×N one given as `MxKxN`; `MxKxNt` takes the right operand as the
    /// transposed view of an N×K tensor (a linear layer's input gradient); `BxMxKxN[t]` runs B
    /// such products as one batched product (attention's per-head products).
    #[arg(long, value_name = "N|[Bx]MxKxN[t]", value_parser = parse_matmul)]
    pub matmul: Option<MatmulShape>,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// `normtune demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Target domain: scanner-b, inverted, lowres, new-finding (or source).
    #[arg(long, default_value = "scanner-b")]
    pub domain: String,
    /// PEFT method (any `--peft` spec: layernorm, lora, full, vision=layernorm,decoder=frozen, ...).
    #[arg(long, default_value = "layernorm")]
    pub method: String,
    /// Training studies of the target domain (each has 6–9 questions) [default: 300; with
    /// --llava 60].
    #[arg(long)]
    pub studies: Option<usize>,
    /// Test studies (drawn with another seed) [default: 100; with --llava 30].
    #[arg(long)]
    pub test_studies: Option<usize>,
    /// Epochs [default: 3; with --llava 1].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Peak learning rate [default: 3e-3; with --llava 1e-3].
    #[arg(long)]
    pub lr: Option<f64>,
    /// Seed of the data and its order.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Run folder (default runs/demo-<unix time>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The LLaVA-style demo instead: this GGUF decoder (the real SmolLM2-135M-Instruct,
    /// `tests/fixtures/fetch_assets.sh` puts it in `.assets/smollm2/`) under the committed small
    /// tower and projector pre-trained on the source domain.
    #[arg(long, value_name = "GGUF")]
    pub llava: Option<PathBuf>,
    /// With --llava: a folder holding another `vision.safetensors` (what `normtune pretrain
    /// --llava` writes) instead of the committed one.
    #[arg(long, value_name = "DIR", requires = "llava")]
    pub vision: Option<PathBuf>,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// `normtune sweep`.
#[derive(Debug, Args)]
pub struct SweepArgs {
    /// Sweep config (TOML): out, run (a train config; default the built-in benchmark),
    /// methods (names from the default grid), [[point]] (name, peft, lr), overrides.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Output folder (overrides the config's `out`; default runs/sweep).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// `normtune pretrain`.
#[derive(Debug, Args)]
pub struct PretrainArgs {
    /// Output model folder (must not exist); working files go to `<out>.work/`.
    #[arg(long)]
    pub out: PathBuf,
    /// Source-domain studies to train on (each has 6–9 questions).
    #[arg(long, default_value_t = 3000)]
    pub studies: usize,
    /// Epochs over them.
    #[arg(long, default_value_t = 4)]
    pub epochs: usize,
    /// Examples per optimizer step.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Peak learning rate (AdamW, linear warm-up, cosine decay).
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Seed of the initial weights, the data and its order.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Pre-train the LLaVA-style demo instead: a small CLIP tower (started from the BLIP demo
    /// base's ViT) and a projector under this GGUF decoder (SmolLM2-135M-Instruct), the decoder
    /// frozen; writes the tower and projector only.
    #[arg(long, value_name = "GGUF")]
    pub llava: Option<PathBuf>,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// `normtune demo-data`.
#[derive(Debug, Args)]
pub struct DemoDataArgs {
    /// Domain: source, scanner-b, inverted, lowres or new-finding.
    #[arg(long, default_value = "source")]
    pub domain: String,
    /// Number of studies (each has 6–9 questions and a report).
    #[arg(long, default_value_t = 200)]
    pub studies: usize,
    /// Seed (a different seed gives a disjoint-looking split: use one for train, another for test).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output folder (must not exist; written atomically).
    #[arg(long)]
    pub out: PathBuf,
}

/// `normtune eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// HF model folder, or a llama.cpp LLaVA pair (`DECODER.gguf,MMPROJ.gguf` or their folder).
    #[arg(long, value_parser = crate::fs::model_path)]
    pub model: PathBuf,
    /// LLaVA-style models: the conversation a question becomes, with `<image>` and `{question}`
    /// (default LLaVA-1.5's `USER: <image>\n{question} ASSISTANT:`; LLaVA-Med v1.5:
    /// `[INST] <image>\n{question} [/INST]`).
    #[arg(long)]
    pub chat_prompt: Option<String>,
    /// Adapter folder to apply (peft or normtune format).
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// Dataset file.
    #[arg(long)]
    pub data: PathBuf,
    /// Its format: vqa-rad, slake, path-vqa, iu-xray, nih-csv, label-list or jsonl.
    #[arg(long)]
    pub format: normtune_core::data::Format,
    /// Folder the records' image paths are relative to (default: the dataset file's folder).
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// Split to score (for files holding several, as IU-Xray's annotation.json).
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Score only the first N examples.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Write the predictions here as JSONL (`normtune score` reads them).
    #[arg(long)]
    pub predictions: Option<PathBuf>,
    /// Beams for beam search (1 = greedy) [default: the model folder's generation_config.json,
    /// else 1].
    #[arg(long)]
    pub num_beams: Option<usize>,
    /// Most tokens to generate [default: generation_config.json's, else 20].
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// `normtune score`.
#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// vqa, report or classification.
    #[arg(long)]
    pub task: TaskArg,
    /// Predictions (JSONL: `{"id", "answer"|"report"|"scores"}`).
    #[arg(long)]
    pub pred: PathBuf,
    /// References (JSONL: `{"id", "answer", "answer_type"}`, `{"id", "report"}` or `{"id", "labels"}`).
    #[arg(long = "ref")]
    pub reference: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Task names on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum TaskArg {
    /// Med-VQA.
    Vqa,
    /// Report generation.
    Report,
    /// Multi-label classification.
    Classification,
}

/// Options every verb that runs a model takes.
#[derive(Debug, Args)]
pub struct DeviceArgs {
    /// cpu (burn flex), gpu (wgpu), cuda or cuda:N (burn's CUDA backend; a `--features cuda`
    /// build), or auto (cuda when it runs here, else wgpu on a hardware adapter, else cpu).
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
}

/// `normtune infer`.
#[derive(Debug, Args)]
pub struct InferArgs {
    /// HF model folder (config.json, model.safetensors, tokenizer, preprocessor_config.json),
    /// `org/name[@revision]` from the local HuggingFace cache (offline), or a llama.cpp LLaVA
    /// pair: `DECODER.gguf,MMPROJ.gguf` or a folder holding the two.
    #[arg(long, value_parser = crate::fs::model_path)]
    pub model: PathBuf,
    /// LLaVA-style models: the conversation a question becomes, with `<image>` and `{question}`
    /// (default LLaVA-1.5's `USER: <image>\n{question} ASSISTANT:`; LLaVA-Med v1.5:
    /// `[INST] <image>\n{question} [/INST]`).
    #[arg(long)]
    pub chat_prompt: Option<String>,
    /// Image file (PNG or JPEG).
    #[arg(long)]
    pub image: PathBuf,
    /// Question (VQA models); leave out to generate a report with a captioning model.
    #[arg(long)]
    pub question: Option<String>,
    /// HF peft adapter folder to apply (adapter_config.json + adapter_model.safetensors).
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// With --adapter: also answer with the base model, and print both.
    #[arg(long, requires = "adapter")]
    pub compare: bool,
    /// Rank these comma-separated candidate answers instead of generating (closed-set mode).
    #[arg(long, value_delimiter = ',')]
    pub candidates: Option<Vec<String>>,
    /// Beams for beam search (1 = greedy) [default: the model folder's generation_config.json,
    /// else 3, MILE's].
    #[arg(long)]
    pub num_beams: Option<usize>,
    /// Most tokens to generate [default: generation_config.json's, else 10].
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
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
    #[arg(long, value_parser = crate::fs::model_path)]
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
    /// Estimate the memory training takes (weights, gradients, AdamW state, activations) for
    /// batches of `--batch` examples of `--text-len` text tokens, with the PEFT given (default
    /// `layernorm`). LLaVA-style models.
    #[arg(long)]
    pub estimate_memory: bool,
    /// Examples per batch, for `--estimate-memory`.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Text tokens per example (prompt and answer; a LLaVA prompt also holds its image
    /// tokens), for `--estimate-memory`.
    #[arg(long, default_value_t = 64)]
    pub text_len: usize,
    /// Of those, the learned answer's tokens (the LM head runs over them only), for
    /// `--estimate-memory`.
    #[arg(long, default_value_t = 16)]
    pub answer_len: usize,
    /// For `--estimate-memory`: the language model's frozen weights kept in this dtype, as a
    /// run's `train.frozen_dtype` does (`f16` or `bf16`).
    #[arg(long)]
    pub frozen_dtype: Option<normtune_core::models::walk::FrozenDtype>,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// `normtune merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Base HF model folder.
    #[arg(long, value_parser = crate::fs::model_path)]
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
    #[arg(long, required_unless_present = "resume")]
    pub config: Option<PathBuf>,
    /// Continue the run in this folder from its last checkpoint (its own config.toml).
    #[arg(long, conflicts_with = "config")]
    pub resume: Option<PathBuf>,
    /// Overrides, e.g. `train.lr=3e-3 epochs=5 peft.default_method=lora`.
    pub overrides: Vec<String>,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// `bench --matmul`'s product: `[batch, m, k] x [batch, k, n]`, the right operand transposed
/// from `[batch, n, k]` when `transposed` (`batch` 1: plain 2-D matrices).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MatmulShape {
    pub batch: usize,
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub transposed: bool,
}

fn parse_matmul(s: &str) -> Result<MatmulShape, String> {
    let bad = || format!("`{s}` is not N, MxKxN[t] or BxMxKxN[t] with sizes of at least 1");
    let (dims, transposed) = match s.strip_suffix('t') {
        Some(d) => (d, true),
        None => (s, false),
    };
    let v: Vec<usize> = dims
        .split('x')
        .map(|d| d.parse::<usize>().ok().filter(|&d| d >= 1))
        .collect::<Option<_>>()
        .ok_or_else(bad)?;
    let (batch, m, k, n) = match v[..] {
        [n] if !transposed => (1, n, n, n),
        [m, k, n] => (1, m, k, n),
        [b, m, k, n] => (b, m, k, n),
        _ => return Err(bad()),
    };
    Ok(MatmulShape {
        batch,
        m,
        k,
        n,
        transposed,
    })
}
