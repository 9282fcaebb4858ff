//! The page: mounts the app; all work happens in the worker.

fn main() {
    normtune_app::run_constructors_once!();
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(normtune_app::ui::App);
}
