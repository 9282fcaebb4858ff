//! The page: mounts the app; all work happens in the worker.

fn main() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(normtune_app::ui::App);
}
