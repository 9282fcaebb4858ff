//! normtune in the browser (placeholder page; the app is its own issue).

use leptos::prelude::*;

fn main() {
    leptos::mount::mount_to_body(App);
}

/// The root component.
#[component]
fn App() -> impl IntoView {
    view! {
        <main>
            <h1>"normtune"</h1>
            <p>"LayerNorm tuning for medical vision-language models, in your browser. Coming soon."</p>
        </main>
    }
}
