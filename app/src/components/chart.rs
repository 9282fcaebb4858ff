//! The live chart: training loss per micro-batch (line, left scale) and overall test accuracy
//! at each evaluation (dots, right scale 0–100 %), drawn as SVG.

use crate::state::AppState;
use leptos::prelude::*;

const W: f64 = 600.0;
const H: f64 = 200.0;
const PAD: f64 = 32.0;

/// The chart.
#[component]
pub fn Chart() -> impl IntoView {
    let state = expect_context::<AppState>();
    let x_of = move |pos: usize| {
        let total = state.position.get().1.max(1) as f64;
        PAD + (W - 2.0 * PAD) * pos as f64 / total
    };
    let max_loss = move || {
        state
            .losses
            .get()
            .iter()
            .map(|(_, l)| *l as f64)
            .fold(0.0f64, f64::max)
            .max(1e-6)
    };
    let loss_points = move || {
        let m = max_loss();
        state
            .losses
            .get()
            .iter()
            .map(|(p, l)| {
                format!(
                    "{:.1},{:.1}",
                    x_of(*p),
                    H - PAD - (H - 2.0 * PAD) * (*l as f64) / m
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    view! {
        <svg class="chart" id="chart" viewBox=format!("0 0 {W} {H}") role="img"
            aria-label="training loss and test accuracy">
            <line x1=PAD y1=H - PAD x2=W - PAD y2=H - PAD class="axis" />
            <line x1=PAD y1=PAD x2=PAD y2=H - PAD class="axis" />
            <line x1=W - PAD y1=PAD x2=W - PAD y2=H - PAD class="axis" />
            <text x=4.0 y=PAD - 8.0 class="loss-label">{move || format!("loss (max {:.2})", max_loss())}</text>
            <text x=W - 110.0 y=PAD - 8.0 class="acc-label">"accuracy % (0–100)"</text>
            <text x=W / 2.0 - 40.0 y=H - 8.0>"micro-batches"</text>
            <polyline points=loss_points class="loss" />
            {move || state.evals.get().into_iter().map(|e| {
                // The app trains without accumulation: optimizer steps are micro-batches.
                let cx = x_of(e.step);
                let cy = H - PAD - (H - 2.0 * PAD) * e.overall / 100.0;
                view! {
                    <circle cx=cx cy=cy r=4.0 class="acc" />
                    <text x=cx + 6.0 y=cy - 6.0 class="acc-label">{format!("{:.1}", e.overall)}</text>
                }
            }).collect_view()}
        </svg>
    }
}
