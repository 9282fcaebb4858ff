//! Fine-tuning: method, epochs, learning rate, batch size and any other run.toml key; start,
//! pause, stop; the trainable line, the run as run.toml, progress, speed, and the live chart.

use super::chart::Chart;
use super::{Busy, NumberInput};
use crate::bridge;
use crate::protocol::{ToWorker, TuneSettings};
use crate::state::AppState;
use leptos::prelude::*;

/// The tune panel.
#[component]
pub fn TunePanel() -> impl IntoView {
    let state = expect_context::<AppState>();
    let method = RwSignal::new("layernorm".to_string());
    let epochs = RwSignal::new(2usize);
    let lr = RwSignal::new(3e-3f64);
    let batch = RwSignal::new(16usize);
    let eval_n = RwSignal::new(48usize);
    let more = RwSignal::new(String::new());
    let running = move || {
        matches!(
            state.run_state.get().as_str(),
            "running" | "paused" | "starting"
        )
    };
    let ready = move || state.data.get().is_some() && state.model.get().is_some() && !running();
    let start = move |_| {
        state.run_state.set("starting".into());
        bridge::send(
            ToWorker::Start(TuneSettings {
                method: method.get_untracked(),
                epochs: epochs.get_untracked(),
                lr: lr.get_untracked(),
                batch_size: batch.get_untracked(),
                eval_examples: eval_n.get_untracked(),
                seed: 0,
                overrides: more
                    .get_untracked()
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(String::from)
                    .collect(),
            }),
            Vec::new(),
        )
    };
    // "Time a step": the chosen method and batch on synthetic inputs, 2 untimed steps then 10.
    let time_steps = move |_| {
        state.step_times.set(Some(None));
        bridge::send(
            ToWorker::TimeSteps {
                method: method.get_untracked(),
                batch_size: batch.get_untracked(),
                warmup: 2,
                steps: 10,
            },
            Vec::new(),
        )
    };
    let can_time =
        move || state.model.get().is_some() && !running() && state.step_times.get() != Some(None);
    let first_last = move || {
        let l = state.losses.get();
        let mean = |s: &[(usize, f32)]| {
            s.iter().map(|(_, v)| *v as f64).sum::<f64>() / s.len().max(1) as f64
        };
        (l.len() >= 2).then(|| {
            let k = (l.len() / 5).clamp(1, 5);
            (mean(&l[..k]), mean(&l[l.len() - k..]))
        })
    };
    view! {
        <section id="tune">
            <h2>"4 · Fine-tune"</h2>
            <div class="row">
                <label>"method "
                    <select id="method" on:change=move |ev| method.set(event_target_value(&ev))>
                        {normtune_core::peft::registry::presets().filter_map(|p| Some((p.spec, p.app?))).map(|(v, l)| view! { <option value=v selected=v == "layernorm">{l}</option> }).collect_view()}
                    </select>
                </label>
                <NumberInput id="epochs" label="epochs" value=epochs min=1usize max=100 />
                <NumberInput id="lr" label="learning rate" value=lr min=1e-8f64 max=1.0 />
                <NumberInput id="batch" label="batch" value=batch min=1usize max=256 />
                <NumberInput id="eval-n" label="test questions scored" value=eval_n min=0usize />
            </div>
            <details id="more-settings">
                <summary>"More settings"</summary>
                <p class="note">"One " <code>"key=value"</code> " a line, as " <code>"normtune train"</code>
                    " takes them after its config: any run.toml key (" <code>"train.weight_decay=0.05"</code> ", "
                    <code>"eval.every=20"</code> ", " <code>"peft.lora.r=16"</code> ", " <code>"augment.hflip=true"</code> ")."</p>
                <textarea id="overrides" rows="4" cols="48" spellcheck="false"
                    placeholder="train.weight_decay=0.05"
                    on:input=move |ev| more.set(event_target_value(&ev))></textarea>
            </details>
            <div class="row">
                <button id="start" disabled=move || !ready() on:click=start>"Start"</button>
                <button id="pause" disabled=move || state.run_state.get() != "running"
                    on:click=move |_| bridge::send(ToWorker::Pause, Vec::new())>"Pause"</button>
                <button id="resume" disabled=move || state.run_state.get() != "paused"
                    on:click=move |_| bridge::send(ToWorker::Resume, Vec::new())>"Resume"</button>
                <button id="stop" disabled=move || !running()
                    on:click=move |_| bridge::send(ToWorker::Stop, Vec::new())>"Stop"</button>
                <span id="run-state" class="state">{move || state.run_state.get()}</span>
                <button id="time-step" disabled=move || !can_time() on:click=time_steps
                    title="Times this method's training step at this batch size on synthetic inputs (no data needed): what a step of your run will cost here">"Time a step"</button>
            </div>
            {move || state.step_times.get().flatten().map(|t| {
                let mut s = t.step_ms.clone();
                s.sort_by(f64::total_cmp);
                let (lo, hi) = (s.first().copied().unwrap_or(f64::NAN), s.last().copied().unwrap_or(f64::NAN));
                let median = format!("{:.3}", t.median_ms());
                let each = t.step_ms.iter().map(|v| format!("{v:.3}")).collect::<Vec<_>>().join(" ");
                let line = format!("{}, batch {}: {:.0} ms a step (median of {}, min {:.0}, max {:.0}, after {} untimed) on {}",
                    t.method, t.batch_size, t.median_ms(), t.step_ms.len(), lo, hi, t.warmup, t.device);
                view! { <p id="step-time" data-median-ms=median data-step-ms=each>{line}</p> }
            })}
            <p class="note">"Scores use greedy answers on the first test questions, before training and after each epoch."</p>
            <Busy />
            {move || state.trainable.get().map(|t| view! { <p id="trainable"><code>{t}</code></p> })}
            {move || state.spec.get().map(|t| view! {
                <details id="run-spec"><summary>"This run as run.toml"</summary><pre>{t}</pre></details>
            })}
            <p id="progress">
                {move || {
                    let (d, t) = state.position.get();
                    let speed = state.speed.get().map(|s| format!(" · {:.2} steps/s · {:.1} examples/s · last step {:.0} ms", s.steps_per_s, s.samples_per_s, s.step_ms)).unwrap_or_default();
                    if t == 0 { String::new() } else { format!("micro-batch {d} of {t}{speed}") }
                }}
            </p>
            <p id="memory" data-trace=move || {
                state.memory.get().iter().map(|(p, mb)| format!("{p}:{mb:.3}")).collect::<Vec<_>>().join(" ")
            }>
                {move || {
                    let m = state.memory.get();
                    m.first().zip(m.last()).map(|((_, a), (_, b))| format!(
                        "worker memory {b:.1} MiB (after the first step: {a:.1} MiB)"
                    ))
                }}
            </p>
            <p id="loss-summary">
                {move || first_last().map(|(a, b)| view! {
                    "loss " <span id="loss-first">{format!("{a:.4}")}</span> " → " <span id="loss-last">{format!("{b:.4}")}</span>
                })}
            </p>
            <p id="acc-summary">
                {move || {
                    let e = state.evals.get();
                    let first = e.first().cloned();
                    let last = e.last().cloned().filter(|l| l.step > 0);
                    first.map(|f| view! {
                        "overall accuracy on " {f.questions} " test questions: zero-shot "
                        <span id="acc-start">{format!("{:.1}", f.overall)}</span> " %"
                        {last.map(|l| view! { " → tuned " <span id="acc-last">{format!("{:.1}", l.overall)}</span> " %" })}
                    })
                }}
            </p>
            <Chart />
        </section>
    }
}
