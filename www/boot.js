// Loads the page's wasm. An external same-origin script, not trunk's inline one, so the page's
// Content-Security-Policy can forbid inline scripts (Trunk.toml's pattern_script points here).
import init from './normtune-app.js';
init({ module_or_path: './normtune-app_bg.wasm' });
