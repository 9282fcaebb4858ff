//! The trainable-parameter report, in HF peft's words
//! (`trainable params: N || all params: M || trainable%: x.xxxx`), per component too.

use super::select::component_of;
use crate::models::Model;
use crate::models::walk::params;
use serde::Serialize;

/// Trainable and total counts for one component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ComponentReport {
    /// Component name.
    pub name: String,
    /// Parameters that train.
    pub trainable_params: usize,
    /// All parameters.
    pub total_params: usize,
}

/// Trainable and total counts for a model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrainableReport {
    /// Parameters that train.
    pub trainable_params: usize,
    /// All parameters.
    pub total_params: usize,
    /// Per component, in model order.
    pub components: Vec<ComponentReport>,
    /// Paths of the trainable parameters.
    pub trainable_paths: Vec<String>,
}

impl TrainableReport {
    /// Trainable share in percent.
    pub fn percent(&self) -> f64 {
        if self.total_params == 0 {
            0.0
        } else {
            100.0 * self.trainable_params as f64 / self.total_params as f64
        }
    }

    /// HF peft's `print_trainable_parameters` line, character for character.
    pub fn peft_line(&self) -> String {
        format!(
            "trainable params: {} || all params: {} || trainable%: {:.4}",
            thousands(self.trainable_params),
            thousands(self.total_params),
            self.percent()
        )
    }
}

/// `1234567` → `1,234,567` (Python's `{:,d}`).
pub fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Counts what trains in `model`.
pub fn report(model: &Model) -> TrainableReport {
    let rows: Vec<(String, &'static str, usize, bool)> = params(model, |_, _, _| false)
        .into_iter()
        .map(|r| {
            (
                r.dotted(),
                component_of(&r.path),
                r.shape.iter().product(),
                r.trainable,
            )
        })
        .collect();
    summarise(model, rows)
}

/// As [`report`] for `model` with `cfg` applied (by [`super::apply`]), without touching any
/// parameter's values: shapes are read lazily and trainability decided from each path as
/// `apply` decides it. A model built from `config.json` alone is never initialised, so a 7B
/// architecture is counted without 28 GB of weights.
pub fn report_lazy(model: &Model, cfg: &super::PeftConfig) -> TrainableReport {
    let components: Vec<&str> = model.components().iter().map(|c| c.name).collect();
    let cfg = super::select::effective(cfg, &components);
    let rows = crate::models::walk::lazy_params(model)
        .into_iter()
        .map(|(path, n)| {
            (
                path.join("."),
                component_of(&path),
                n,
                super::select::trainable_at(&cfg, &path),
            )
        })
        .collect();
    summarise(model, rows)
}

fn summarise(model: &Model, rows: Vec<(String, &'static str, usize, bool)>) -> TrainableReport {
    let components = model
        .components()
        .iter()
        .map(|c| ComponentReport {
            name: c.name.to_string(),
            trainable_params: rows
                .iter()
                .filter(|r| r.1 == c.name && r.3)
                .map(|r| r.2)
                .sum(),
            total_params: rows.iter().filter(|r| r.1 == c.name).map(|r| r.2).sum(),
        })
        .collect();
    TrainableReport {
        trainable_params: rows.iter().filter(|r| r.3).map(|r| r.2).sum(),
        total_params: rows.iter().map(|r| r.2).sum(),
        components,
        trainable_paths: rows.iter().filter(|r| r.3).map(|r| r.0.clone()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::thousands;

    #[test]
    fn formats_like_python() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(361_512_345), "361,512,345");
    }
}
