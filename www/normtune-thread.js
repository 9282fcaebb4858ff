// One rayon thread of the compute worker (app/src/threads.rs). The compute worker posts its
// compiled module and its shared memory; this worker instantiates the same module on that memory,
// says it is ready, and then runs rayon's worker loop for the life of the page (it blocks on
// atomics, which dedicated workers may do).
self.normtuneThread = true; // the module's start function sees this and leaves the app loop alone
importScripts("./normtune-cpu-worker.js");

self.onmessage = async (event) => {
  self.onmessage = null;
  const [module, memory] = event.data;
  // 2 MiB of stack, as a native Rust thread gets.
  await wasm_bindgen({ module_or_path: module, memory, thread_stack_size: 2 << 20 });
  postMessage('ready');
  wasm_bindgen.normtune_thread_main();
};
