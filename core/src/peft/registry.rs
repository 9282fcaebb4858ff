//! Every PEFT method, one row each, as peft's `PEFT_TYPE_TO_TUNER_MAPPING`: its names, which
//! parameters it trains or adds, and the presets the
//! browser app offers and `normtune sweep` runs. [`Method`]'s names, parsing and the sweep grid,
//! the app's method list and the trainability rules are read from here, so a method is its
//! file (how it attaches, how it is saved) plus one row.

use super::config::PeftConfig;
use super::io::PeftFormat;
use crate::error::Result;
use crate::models::Model;
use serde::{Deserialize, Serialize};

/// How a method's modules are put into a model, shared by the methods one module serves (LoRA
/// and DoRA; prefix tuning and P-tuning v2): `key` names the group, so it runs once.
pub struct Attach {
    /// The group's name.
    pub key: &'static str,
    /// Adds the modules to every component whose method is in the group.
    pub run: fn(Model, &PeftConfig) -> Result<Model>,
}

const LOW_RANK: Attach = Attach {
    key: "lora",
    run: |m, c| super::lora::attach(m, c, None),
};
const PREFIXES: Attach = Attach {
    key: "prefix",
    run: super::prefix::attach,
};

/// One PEFT method.
pub struct Tuner {
    /// The enum value configs hold.
    pub method: Method,
    /// Its name on the command line and in config files.
    pub name: &'static str,
    /// Other spellings accepted.
    pub aliases: &'static [&'static str],
    /// The parameters the method adds, recognised by their path (segments, leaf last); `None`
    /// for methods that train some of the model's own parameters in place.
    pub adds: Option<fn(&[String]) -> bool>,
    /// For in-place methods: which of the model's parameters train.
    pub selects: fn(&[String]) -> bool,
    /// Adds the method's modules (`None`: it trains the model's own parameters).
    pub attach: Option<Attach>,
    /// Whether what it trains folds into plain weights (`normtune merge`).
    pub mergeable: bool,
    /// peft's adapter format for it, when peft has one (written when it holds exactly what
    /// trains; else normtune's own format).
    pub format: Option<&'static PeftFormat>,
    /// Runs offered for it (app menu and sweep grid).
    pub presets: &'static [Preset],
}

/// A ready-made run of a method: a PEFT spec and a learning rate.
pub struct Preset {
    /// Name in the sweep grid (`methods = [...]` in a sweep file).
    pub name: &'static str,
    /// The `--peft` spec.
    pub spec: &'static str,
    /// Learning rate the sweep uses.
    pub lr: f64,
    /// The browser app's menu label, if the app offers it.
    pub app: Option<&'static str>,
}

const fn preset(name: &'static str, spec: &'static str, lr: f64) -> Preset {
    Preset {
        name,
        spec,
        lr,
        app: None,
    }
}

const fn offered(name: &'static str, spec: &'static str, lr: f64, app: &'static str) -> Preset {
    Preset {
        name,
        spec,
        lr,
        app: Some(app),
    }
}

fn has(path: &[String], seg: &str) -> bool {
    path.iter().any(|s| s == seg)
}

fn leaf(path: &[String]) -> &str {
    path.last().map(String::as_str).unwrap_or("")
}

fn nothing(_: &[String]) -> bool {
    false
}

/// Declares the methods, one row each: `Variant { name, aliases, ... }` makes the
/// [`Method`] variant (serde's name is the variant in kebab case, checked against the row's
/// `name` by a test) and its [`Tuner`] row of [`TUNERS`], so a new method is one row here.
macro_rules! tuners {
    ($( $(#[doc = $doc:literal])* $variant:ident { $($row:tt)* }, )*) => {
        /// A fine-tuning method for one component: one per row of [`TUNERS`].
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
        )]
        #[serde(rename_all = "kebab-case")]
        pub enum Method {
            $( $(#[doc = $doc])* $variant, )*
        }

        /// The methods, in the order menus and the sweep grid list them.
        pub const TUNERS: &[Tuner] = &[ $( Tuner { method: Method::$variant, $($row)* }, )* ];
    };
}

tuners! {
    /// Only LayerNorm weights and biases train (every LN: blocks, embeddings, post/final norms).
    Layernorm {
        name: "layernorm",
        aliases: &["ln", "ln-tuning"],
        adds: None,
        // LayerNorm (gamma, beta) and RMSNorm (gamma) are the only modules with these names.
        selects: |p| matches!(leaf(p), "gamma" | "beta"),
        attach: None,
        mergeable: true,
        format: Some(&super::layernorm::FORMAT),
        presets: &[
            offered(
                "layernorm",
                "layernorm",
                3e-3,
                "LayerNorm tuning (all components)",
            ),
            offered(
                "F-F-LN",
                "vision=frozen,text_encoder=frozen,decoder=layernorm",
                3e-3,
                "LayerNorm of the decoder only (F-F-LN)",
            ),
        ],
    },
    /// LoRA adapters on target modules.
    Lora {
        name: "lora",
        aliases: &[],
        // burn's LoRA factors sit under the adapted weight: `<linear>.weight.lora.{a,b}`.
        adds: Some(|p| has(p, "lora")),
        selects: nothing,
        attach: Some(LOW_RANK),
        mergeable: true,
        format: Some(&super::lora::FORMAT),
        presets: &[
            offered("lora", "lora", 1e-3, "LoRA r=8 (query/value, vision qkv)"),
            preset(
                "F-F-LoRA",
                "vision=frozen,text_encoder=frozen,decoder=lora",
                1e-3,
            ),
            preset(
                "F-LoRA-LoRA",
                "vision=frozen,text_encoder=lora,decoder=lora",
                1e-3,
            ),
            preset(
                "F-T-LoRA",
                "vision=frozen,text_encoder=full,decoder=lora",
                1e-4,
            ),
            preset(
                "T-T-LoRA",
                "vision=full,text_encoder=full,decoder=lora",
                1e-4,
            ),
        ],
    },
    /// DoRA: LoRA plus a trained magnitude per output feature (peft `use_dora`), with LoRA's
    /// settings.
    Dora {
        name: "dora",
        aliases: &[],
        // `<linear>.weight.dora.{a,b,magnitude}`.
        adds: Some(|p| has(p, "dora")),
        selects: nothing,
        attach: Some(LOW_RANK),
        mergeable: true,
        format: Some(&super::lora::FORMAT),
        presets: &[offered(
            "dora",
            "dora",
            1e-3,
            "DoRA r=8 (LoRA + a magnitude per output)",
        )],
    },
    /// IA3 scaling vectors.
    Ia3 {
        name: "ia3",
        aliases: &[],
        // `key_ia3`, `value_ia3`, `dense_ia3`.
        adds: Some(|p| leaf(p).ends_with("_ia3")),
        selects: nothing,
        attach: Some(Attach {
            key: "ia3",
            run: super::ia3::attach,
        }),
        mergeable: true,
        format: Some(&super::ia3::FORMAT),
        presets: &[offered(
            "F-IA3-IA3",
            "vision=frozen,text_encoder=ia3,decoder=ia3",
            3e-3,
            "IA3 (text components)",
        )],
    },
    /// Only biases train (BitFit), LayerNorm biases included.
    Bitfit {
        name: "bitfit",
        aliases: &[],
        adds: None,
        selects: |p| matches!(leaf(p), "bias" | "beta"),
        attach: None,
        mergeable: true,
        format: None,
        presets: &[offered("bitfit", "bitfit", 3e-3, "BitFit (biases)")],
    },
    /// Houlsby bottleneck adapters.
    Adapter {
        name: "adapter",
        aliases: &[],
        // `adapter`, `attn_adapter`, `mlp_adapter`.
        adds: Some(|p| p.iter().any(|s| s.ends_with("adapter"))),
        selects: nothing,
        attach: Some(Attach {
            key: "adapter",
            run: super::adapter::attach,
        }),
        mergeable: false,
        format: None,
        presets: &[offered("adapter", "adapter", 1e-3, "Bottleneck adapters")],
    },
    /// Prefix tuning with the MLP reparameterisation.
    Prefix {
        name: "prefix",
        aliases: &[],
        // Prefix keys/values and their projection MLP.
        adds: Some(|p| has(p, "prefix")),
        selects: nothing,
        attach: Some(PREFIXES),
        mergeable: false,
        format: None,
        presets: &[preset(
            "F-F-Prefix",
            "vision=frozen,text_encoder=frozen,decoder=prefix",
            3e-3,
        )],
    },
    /// P-tuning v2 (prefix without projection).
    PtuningV2 {
        name: "ptuning-v2",
        aliases: &["ptv2", "p-tuning-v2"],
        adds: Some(|p| has(p, "prefix")),
        selects: nothing,
        attach: Some(PREFIXES),
        mergeable: false,
        format: Some(&super::prefix::FORMAT),
        presets: &[offered(
            "F-F-PTv2",
            "vision=frozen,text_encoder=frozen,decoder=ptuning-v2",
            3e-3,
            "P-tuning v2 on the decoder (F-F-PTv2)",
        )],
    },
    /// Only the feed-forward projections train.
    Ffn {
        name: "ffn",
        aliases: &[],
        adds: None,
        // ViT/BLIP `mlp.fc1/fc2`; BERT `intermediate.dense` and the layer's own `output.dense`
        // (the one right after the layer index, not `attention.output.dense`).
        selects: |p| {
            has(p, "mlp")
                || has(p, "intermediate")
                || p.windows(3)
                    .any(|w| w[0].parse::<usize>().is_ok() && w[1] == "output" && w[2] == "dense")
        },
        attach: None,
        mergeable: true,
        format: None,
        presets: &[preset("ffn", "ffn", 3e-4)],
    },
    /// Only attention parameters train (self- and cross-attention projections and the attention
    /// output block, as MISS's `attention` variant: every name containing "attention").
    Attention {
        name: "attention",
        aliases: &["attn"],
        adds: None,
        // MISS: every parameter whose HF name contains "attention" (q/k/v, attention output and
        // its LayerNorm, self- and cross-attention); the BLIP vision blocks call it `self_attn`.
        selects: |p| {
            p.iter()
                .any(|s| s.contains("attention") || s == "self_attn")
        },
        attach: None,
        mergeable: true,
        format: None,
        presets: &[preset("attention", "attention", 3e-4)],
    },
    /// Every parameter trains.
    Full {
        name: "full",
        aliases: &[],
        adds: None,
        selects: |_| true,
        attach: None,
        mergeable: true,
        format: None,
        presets: &[offered("full", "full", 1e-4, "Full fine-tuning")],
    },
    /// Nothing trains.
    Frozen {
        name: "frozen",
        aliases: &["none"],
        adds: None,
        selects: nothing,
        attach: None,
        mergeable: true,
        format: None,
        presets: &[],
    },
}

/// The row of `method`.
pub fn tuner(method: Method) -> &'static Tuner {
    TUNERS
        .iter()
        .find(|t| t.method == method)
        .expect("every Method has a row in TUNERS")
}

/// The method named `name` (or one of its aliases), after lower-casing and `_` → `-`.
pub fn find(name: &str) -> Option<Method> {
    let n = name.trim().to_ascii_lowercase().replace('_', "-");
    TUNERS
        .iter()
        .find(|t| t.name == n || t.aliases.contains(&n.as_str()))
        .map(|t| t.method)
}

/// The methods that add the parameter at `path` (empty: a parameter of the model itself).
pub fn adders(path: &[String]) -> impl Iterator<Item = Method> + '_ {
    TUNERS
        .iter()
        .filter(move |t| t.adds.is_some_and(|f| f(path)))
        .map(|t| t.method)
}

/// The attach steps `methods` need, each group once, in table order.
pub fn attach_steps(methods: &[Method]) -> Vec<&'static Attach> {
    let mut steps: Vec<&'static Attach> = Vec::new();
    for t in TUNERS {
        if let Some(a) = &t.attach
            && methods.contains(&t.method)
            && !steps.iter().any(|s| s.key == a.key)
        {
            steps.push(a);
        }
    }
    steps
}

/// peft's adapter formats the methods name, each once, in row order: the order
/// [`super::io::save_adapter`] tries them in.
pub fn formats() -> impl Iterator<Item = &'static PeftFormat> {
    let mut seen: Vec<&'static str> = Vec::new();
    TUNERS.iter().filter_map(|t| t.format).filter(move |f| {
        let new = !seen.contains(&f.peft_type);
        seen.push(f.peft_type);
        new
    })
}

/// Every preset, in table order.
pub fn presets() -> impl Iterator<Item = &'static Preset> {
    TUNERS.iter().flat_map(|t| t.presets.iter())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each row's `name` is what serde writes and reads for its variant (config files and
    /// adapter metadata use serde's name, the command line the row's).
    #[test]
    fn every_row_is_named_as_serde_names_its_method() {
        for t in TUNERS {
            let serde: Method = serde_json::from_value(serde_json::json!(t.name)).unwrap();
            assert_eq!(serde, t.method, "{}", t.name);
            assert_eq!(serde_json::to_value(t.method).unwrap(), t.name);
            assert_eq!(tuner(t.method).name, t.name);
        }
    }

    #[test]
    fn names_are_unique_and_presets_parse() {
        let mut seen = std::collections::BTreeSet::new();
        for t in TUNERS {
            for n in std::iter::once(&t.name).chain(t.aliases) {
                assert!(seen.insert(*n), "`{n}` names two methods");
                assert_eq!(find(n), Some(t.method));
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for p in presets() {
            assert!(names.insert(p.name), "preset `{}` twice", p.name);
            super::super::PeftConfig::parse(p.spec).unwrap();
        }
    }
}
