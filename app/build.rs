//! wasm32's default stack is 1 MiB; training and generation in a development build (async
//! futures and autodiff graphs of unoptimised code) overflow it, which wasm reports only as
//! "memory access out of bounds". The worker and the tests link with 16 MiB.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32") {
        println!("cargo:rustc-link-arg=-zstack-size=16777216");
    }
}
