//! Learning-rate schedule: linear warmup, then cosine decay to `min_lr` (MILE: cosine to 0).

use serde::{Deserialize, Serialize};

/// Warmup + cosine.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// Peak learning rate.
    pub lr: f64,
    /// Learning rate at the end.
    pub min_lr: f64,
    /// Optimizer steps of linear warmup from 0.
    pub warmup_steps: usize,
    /// Total optimizer steps.
    pub total_steps: usize,
}

impl Schedule {
    /// The learning rate for optimizer step `step` (0-based).
    pub fn lr_at(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let decay = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        let t = ((step - self.warmup_steps) as f64 / decay as f64).min(1.0);
        self.min_lr + 0.5 * (self.lr - self.min_lr) * (1.0 + (std::f64::consts::PI * t).cos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warms_up_then_decays_to_the_floor() {
        let s = Schedule {
            lr: 1e-3,
            min_lr: 0.0,
            warmup_steps: 10,
            total_steps: 110,
        };
        assert!((s.lr_at(0) - 1e-4).abs() < 1e-12);
        assert!((s.lr_at(9) - 1e-3).abs() < 1e-12);
        assert!((s.lr_at(10) - 1e-3).abs() < 1e-12);
        assert!((s.lr_at(60) - 5e-4).abs() < 1e-12);
        assert!(s.lr_at(110).abs() < 1e-12);
        assert!(s.lr_at(500).abs() < 1e-12);
    }
}
