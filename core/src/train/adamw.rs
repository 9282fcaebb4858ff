//! AdamW as one pass over memory on the CPU, burn's AdamW everywhere else.
//!
//! burn's [`AdamW`] updates a parameter with fifteen tensor ops (moment updates, bias
//! corrections, the square root, the quotient, decay, the step), each a full pass that reads and
//! writes a parameter-sized tensor. Full fine-tuning of a 147M-parameter model spent ~500 ms a
//! step there on two cores (BENCHMARKS.md, 2026-12-04, issue 25). On the CPU (`flex`, f32) the
//! same arithmetic runs here as one loop over the parameter, its gradient and both moments,
//! split across threads: the same operations in the same order, so the results are bit for bit
//! those of burn's `AdamW` (tested), and the state is burn's [`AdamWState`], so checkpoints are
//! unchanged. Other devices (wgpu fuses the ops itself) and dtypes use burn's `AdamW`.

use burn::optim::{AdamW, AdamWConfig, AdamWState, AdaptiveMomentumState, LearningRate, Optimizer};
use burn::tensor::{DType, Device, Tensor, TensorData};

/// AdamW's settings (burn's defaults but the weight decay) and burn's own for the fallback.
#[derive(Clone)]
pub struct FusedAdamW {
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    weight_decay: f32,
    burn: AdamW,
}

impl FusedAdamW {
    /// AdamW with betas 0.9 and 0.999, epsilon 1e-5 (burn's defaults) and `weight_decay`.
    pub fn new(weight_decay: f32) -> Self {
        let (beta_1, beta_2, epsilon) = (0.9, 0.999, 1e-5);
        Self {
            beta_1,
            beta_2,
            epsilon,
            weight_decay,
            burn: AdamWConfig::new()
                .with_beta_1(beta_1)
                .with_beta_2(beta_2)
                .with_epsilon(epsilon)
                .with_weight_decay(weight_decay)
                .build(),
        }
    }

    /// Whether a step on these tensors runs as one pass here (f32 on the CPU backend).
    pub fn fused<const D: usize>(
        tensor: &Tensor<D>,
        grad: &Tensor<D>,
        state: Option<&AdamWState<D>>,
    ) -> bool {
        let f32_cpu = |t: &Tensor<D>| t.dtype() == DType::F32 && is_cpu(&t.device());
        f32_cpu(tensor)
            && f32_cpu(grad)
            && state.is_none_or(|s| {
                s.momentum.max_moment_2.is_none()
                    && f32_cpu(&s.momentum.moment_1)
                    && f32_cpu(&s.momentum.moment_2)
            })
    }
}

#[cfg(feature = "flex")]
fn is_cpu(device: &Device) -> bool {
    *device == Device::flex()
}
#[cfg(not(feature = "flex"))]
fn is_cpu(_: &Device) -> bool {
    false
}

impl Optimizer for FusedAdamW {
    type State<const D: usize> = AdamWState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        if !Self::fused(&tensor, &grad, state.as_ref()) {
            return self.burn.step(lr, tensor, grad, state);
        }
        let device = tensor.device();
        let shape = tensor.shape();
        let time = state.as_ref().map_or(1, |s| s.momentum.time + 1);
        // A tensor owned by nobody else comes out without a copy (flex's `into_data`).
        let mut p = tensor.into_data();
        let g = grad.into_data();
        let (mut m, mut v) = match state {
            Some(s) => (
                s.momentum.moment_1.into_data(),
                s.momentum.moment_2.into_data(),
            ),
            None => {
                let zeros = TensorData::new(vec![0f32; shape.num_elements()], shape.clone());
                (zeros.clone(), zeros)
            }
        };
        let c = Constants::new(self, lr, time);
        update(
            p.as_mut_slice::<f32>().expect("f32 parameter"),
            g.as_slice::<f32>().expect("f32 gradient"),
            m.as_mut_slice::<f32>().expect("f32 first moment"),
            v.as_mut_slice::<f32>().expect("f32 second moment"),
            &c,
        );
        let momentum = AdaptiveMomentumState::new(
            time,
            Tensor::from_data(m, &device),
            Tensor::from_data(v, &device),
        );
        (
            Tensor::from_data(p, &device),
            Some(AdamWState::new(momentum)),
        )
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        <AdamW as Optimizer>::to_device(state, device)
    }
}

/// The scalars of one step, each rounded to f32 as burn's tensor ops round them.
struct Constants {
    beta_1: f32,
    beta_2: f32,
    factor_1: f32,
    factor_2: f32,
    correction_1: f32,
    correction_2: f32,
    epsilon: f32,
    /// `None` without weight decay (burn then leaves the parameter as it is).
    keep: Option<f32>,
    lr: f32,
    first: bool,
}

impl Constants {
    fn new(o: &FusedAdamW, lr: LearningRate, time: usize) -> Self {
        let decay_rate = lr * o.weight_decay as f64;
        Self {
            beta_1: o.beta_1,
            beta_2: o.beta_2,
            factor_1: 1.0 - o.beta_1,
            factor_2: 1.0 - o.beta_2,
            correction_1: 1f32 - o.beta_1.powi(time as i32),
            correction_2: 1f32 - o.beta_2.powi(time as i32),
            epsilon: o.epsilon,
            keep: (decay_rate != 0.0).then_some((1.0 - decay_rate) as f32),
            lr: lr as f32,
            first: time == 1,
        }
    }
}

/// One AdamW step over a parameter, in place, threaded over chunks on native targets.
fn update(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], c: &Constants) {
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        const CHUNK: usize = 1 << 15;
        if p.len() > CHUNK {
            p.par_chunks_mut(CHUNK)
                .zip(g.par_chunks(CHUNK))
                .zip(m.par_chunks_mut(CHUNK))
                .zip(v.par_chunks_mut(CHUNK))
                .for_each(|(((p, g), m), v)| update_chunk(p, g, m, v, c));
            return;
        }
    }
    update_chunk(p, g, m, v, c);
}

/// burn's `AdamW` step (`burn-optim` 0.22.1, `adamw.rs`) element by element, in its order:
/// `m = m·β₁ + g·(1−β₁)` (the first step: `g·(1−β₁)`), `v = v·β₂ + g²·(1−β₂)`,
/// `Δ = (m / c₁) / (sqrt(v / c₂) + ε)`, `p = p·(1 − lr·λ) − Δ·lr`.
fn update_chunk(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], c: &Constants) {
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        let gf = g * c.factor_1;
        let g2 = (g * g) * c.factor_2;
        if c.first {
            *m = gf;
            *v = g2;
        } else {
            *m = *m * c.beta_1 + gf;
            *v = *v * c.beta_2 + g2;
        }
        let delta = (*m / c.correction_1) / ((*v / c.correction_2).sqrt() + c.epsilon);
        let kept = match c.keep {
            Some(k) => *p * k,
            None => *p,
        };
        *p = kept - delta * c.lr;
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    fn bits<const D: usize>(t: &Tensor<D>) -> Vec<u32> {
        t.to_data().iter::<f32>().map(f32::to_bits).collect()
    }

    /// Four steps on a parameter of more than one chunk, with and without weight decay and
    /// across learning rates, equal burn's `AdamW` bit for bit: parameter and both moments.
    #[test]
    fn equals_burns_adamw_bit_for_bit() {
        let device = Device::flex();
        for wd in [0.0f32, 0.05] {
            let ours = FusedAdamW::new(wd);
            let theirs = ours.burn.clone();
            let init = Tensor::<2>::random([300, 257], Distribution::Normal(0.0, 1.0), &device);
            let (mut pa, mut pb) = (init.clone(), init);
            let (mut sa, mut sb) = (None, None);
            for (i, lr) in [1e-3, 3e-4, 0.1, 2e-5].into_iter().enumerate() {
                let grad =
                    Tensor::<2>::random([300, 257], Distribution::Normal(0.0, 0.01), &device)
                        * (i as f64 + 1.0);
                assert!(FusedAdamW::fused(&pa, &grad, sa.as_ref()));
                let (a, s) = ours.step(lr, pa, grad.clone(), sa);
                let (b, t) = theirs.step(lr, pb, grad, sb);
                assert_eq!(bits(&a), bits(&b), "parameter, wd {wd}, step {i}");
                let (ms, mt) = (&s.as_ref().unwrap().momentum, &t.as_ref().unwrap().momentum);
                assert_eq!(ms.time, mt.time);
                assert_eq!(bits(&ms.moment_1), bits(&mt.moment_1), "m, step {i}");
                assert_eq!(bits(&ms.moment_2), bits(&mt.moment_2), "v, step {i}");
                (pa, pb, sa, sb) = (a, b, s, t);
            }
        }
    }

    /// Other dtypes take burn's path (and give its result).
    #[test]
    fn f64_is_left_to_burn() {
        let device = Device::flex();
        let p = Tensor::<1>::from_floats([1.0, -2.0], &device).cast(DType::F64);
        let g = Tensor::<1>::from_floats([0.5, 0.25], &device).cast(DType::F64);
        assert!(!FusedAdamW::fused(&p, &g, None));
        let (a, _) = FusedAdamW::new(0.05).step(1e-2, p, g, None);
        assert_eq!(a.dtype(), DType::F64);
    }
}
