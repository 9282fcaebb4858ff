//! `run(m, n, k, iters)`: `iters` f32 products of an m x k by a k x n matrix on one thread, for
//! run.sh to time from JavaScript.

use gemm::{Parallelism, gemm};

#[unsafe(no_mangle)]
pub extern "C" fn run(m: usize, n: usize, k: usize, iters: usize) -> f32 {
    let a: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32) * 0.1).collect();
    let b: Vec<f32> = (0..k * n).map(|i| ((i * 5 % 11) as f32) * 0.1).collect();
    let mut c = vec![0f32; m * n];
    for _ in 0..iters {
        // SAFETY: a, b and c hold m x k, k x n and m x n row-major values.
        unsafe {
            gemm(
                m, n, k, c.as_mut_ptr(), 1, n as isize, false, a.as_ptr(), 1, k as isize,
                b.as_ptr(), 1, n as isize, 0.0, 1.0, false, false, false, Parallelism::None,
            );
        }
    }
    // The sum keeps the products from being optimised away.
    c.iter().sum()
}
