//! MILE's data-level finding (arXiv 2403.06407): training questions rephrased through a pool of
//! instruction templates, one drawn per sample per epoch. A pool is a text file, one template a
//! line holding `{question}` once (blank lines and `#` comments skipped); the draw depends only
//! on the run's seed, the epoch and the example's index, so a resumed run draws the same.

use crate::error::{Error, Result};

/// A pool of question templates (empty: questions as written).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QuestionTemplates(Vec<String>);

/// normtune's default pool for the built-in benchmark (instruction-style phrasings of a
/// question about an image, in the spirit of MILE's; not their exact list, which is unpublished).
pub const DEFAULT_POOL: &str = "\
{question}
Question: {question} Answer:
Look at the image. {question}
Based on the image, {question}
Answer the question about this medical image: {question}
As a radiologist reading this image: {question}
{question} Answer briefly.
Please answer: {question}
";

impl QuestionTemplates {
    /// Parses a pool (`file` names it in errors).
    pub fn parse(text: &str, file: &str) -> Result<Self> {
        let mut out = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            if t.matches("{question}").count() != 1 {
                return Err(Error::config(
                    file,
                    &format!("line {}", n + 1),
                    format!("`{t}` must hold `{{question}}` exactly once"),
                ));
            }
            out.push(t.to_string());
        }
        if out.is_empty() {
            return Err(Error::config(
                file,
                "(file)",
                "no templates (one a line, with `{question}`)",
            ));
        }
        Ok(Self(out))
    }

    /// The built-in benchmark's pool ([`DEFAULT_POOL`]).
    pub fn default_pool() -> Self {
        Self::parse(DEFAULT_POOL, "default pool").expect("static pool")
    }

    /// The templates.
    pub fn templates(&self) -> &[String] {
        &self.0
    }

    /// `question` through the template drawn for example `index` in `epoch` of a run seeded
    /// `seed`; unchanged with an empty pool.
    pub fn apply(&self, question: &str, seed: u64, epoch: usize, index: usize) -> String {
        if self.0.is_empty() {
            return question.to_string();
        }
        // SplitMix64 of the three, apart from augmentation's draws (another constant).
        let mut z = (seed ^ 0x5EED_7E3B_1A7E_0001)
            .wrapping_add((epoch as u64).wrapping_mul(0xA24B_AED4_963E_E407))
            .wrapping_add((index as u64).wrapping_mul(0x9FB2_1C65_1E98_DF25))
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let t = &self.0[(z % self.0.len() as u64) as usize];
        t.replace("{question}", question.trim())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_fixed_by_seed_epoch_and_index_and_cover_the_pool() {
        let p = QuestionTemplates::default_pool();
        let a: Vec<String> = (0..64).map(|i| p.apply("Is it normal?", 7, 1, i)).collect();
        let b: Vec<String> = (0..64).map(|i| p.apply("Is it normal?", 7, 1, i)).collect();
        assert_eq!(a, b);
        let c: Vec<String> = (0..64).map(|i| p.apply("Is it normal?", 7, 2, i)).collect();
        assert_ne!(a, c, "another epoch draws again");
        let used: std::collections::BTreeSet<&String> = a.iter().collect();
        assert_eq!(
            used.len(),
            p.templates().len(),
            "64 draws use all 8 templates"
        );
        assert!(a.iter().all(|q| q.contains("Is it normal?")));
        assert_eq!(QuestionTemplates::default().apply(" q ", 1, 0, 0), " q ");
    }

    #[test]
    fn a_template_without_its_placeholder_is_refused_by_line() {
        let e = QuestionTemplates::parse("# pool\n{question}\nWhat is it?\n", "pool.txt")
            .unwrap_err()
            .to_string();
        assert!(e.contains("pool.txt") && e.contains("line 3"), "{e}");
        assert!(QuestionTemplates::parse("\n# only comments\n", "p.txt").is_err());
    }
}
