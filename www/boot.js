// Loads the page's wasm. An external same-origin script, not trunk's inline one, so the page's
// Content-Security-Policy can forbid inline scripts (Trunk.toml's pattern_script points here).
// The app is built with WebAssembly SIMD (`+simd128`): a browser without it could not compile
// the module, so it gets one plain sentence instead of a blank page.
import init from './normtune-app.js';

// The smallest module using a SIMD instruction: (func (result v128) (v128.const i32x4 0 0 0 0)).
const SIMD_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0,
  10, 22, 1, 20, 0, 253, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 11]);

if (WebAssembly.validate(SIMD_PROBE)) {
  init({ module_or_path: './normtune-app_bg.wasm' });
} else {
  const p = document.createElement('p');
  p.id = 'no-simd';
  p.setAttribute('role', 'alert');
  p.textContent = 'normtune needs WebAssembly SIMD, which this browser does not have. Use a current ' +
    'Chrome, Edge, Firefox or Safari (16.4 or later).';
  document.body.append(p);
}
