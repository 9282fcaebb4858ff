//! DoRA, weight-decomposed low-rank adaptation (Liu et al. 2024, arXiv 2402.09353; HF peft
//! `LoraConfig(use_dora=True)`): a LoRA update plus a trainable magnitude per output feature,
//!
//! `W' = m ⊙ (W + s·A·B) / ‖W + s·A·B‖`, the norm taken over the input dimension per output
//! feature and treated as a constant (detached, as peft and the paper's section 4.3 do), so it
//! gets no gradient. At init `B = 0` and `m = ‖W‖`, so the model starts as the base.
//!
//! The settings are LoRA's (`[peft.lora]`: `r`, `lora_alpha`, `lora_dropout`, `target_modules`,
//! `use_rslora`); adapters are written as peft writes them (`peft_type` LORA, `use_dora` true,
//! `lora_magnitude_vector` per module) and peft's load here. Whole modules only: a slice of a
//! fused projection (`qkv.q`) has no DoRA form in peft.

use burn::module::{Module, Param, ParamGroup, Reparameterization, Reparameterizer};
use burn::tensor::Tensor;

/// The DoRA parameters of one adapted Linear weight (burn layout `[d_in, d_out]`).
#[derive(Module, Debug)]
pub struct DoraAdapter {
    /// `[d_in, r]` (peft's `lora_A` transposed).
    pub a: Param<Tensor<2>>,
    /// `[r, d_out]` (peft's `lora_B` transposed), zero at init.
    pub b: Param<Tensor<2>>,
    /// `[d_out]` (peft's `lora_magnitude_vector`): the row norms of the base weight at init.
    pub magnitude: Param<Tensor<1>>,
    /// `lora_alpha / r` (or `/ √r` with rsLoRA).
    pub scale: f64,
}

impl DoraAdapter {
    /// `m / ‖W + s·A·B‖` as `[1, d_out]`, detached from the graph, for a base weight `w` and
    /// the update `delta = s·A·B` (both `[d_in, d_out]`, in the factors' dtype).
    pub fn magnitude_scale(&self, w: Tensor<2>, delta: Tensor<2>) -> Tensor<2> {
        let norm = row_norms(w.detach() + delta.detach());
        (self.magnitude.val() / norm).unsqueeze_dim::<2>(0)
    }

    /// `s·A·B`, `[d_in, d_out]`.
    pub fn delta(&self) -> Tensor<2> {
        self.a.val().matmul(self.b.val()).mul_scalar(self.scale)
    }
}

impl Reparameterization for DoraAdapter {
    const NAME: &'static str = "dora";

    fn apply<const D: usize>(&self, base: Tensor<D>) -> Tensor<D> {
        let shape = base.shape();
        let dims = shape.clone().to_vec();
        let (d_in, d_out) = (dims[0], dims[dims.len() - 1]);
        // A frozen base stored in half precision meets the factors in their (f32) dtype.
        let w = base.reshape([d_in, d_out]).cast(self.a.val().dtype());
        let delta = self.delta();
        let k = self.magnitude_scale(w.clone(), delta.clone());
        ((w + delta) * k).reshape(shape)
    }
}

/// `‖W‖` per output feature, `[d_out]`: DoRA's magnitude at init and the norm
/// [`DoraAdapter::magnitude_scale`] divides by, one computation, so that with `B = 0` the scale
/// is exactly 1 and the adapted weight is the base bit for bit.
pub fn row_norms(w: Tensor<2>) -> Tensor<1> {
    let d_out = w.dims()[1];
    (w.clone() * w).sum_dim(0).sqrt().reshape([d_out])
}

/// Attaches a [`DoraAdapter`] to the 2-D weights in `group`, initialised as peft does: `A`
/// kaiming-uniform (`U(±1/√d_in)`), `B = 0`, `m = ‖W‖` per output feature. Other parameters
/// pass through unchanged (the caller's selection sets what trains).
pub(crate) struct DoraReparameterizer {
    pub group: ParamGroup,
    pub r: usize,
    pub scale: f64,
}

impl Reparameterizer for DoraReparameterizer {
    type Reparam = DoraAdapter;

    fn reparameterize<const D: usize>(
        &mut self,
        path: &str,
        param: Param<Tensor<D>>,
    ) -> (Param<Tensor<D>>, Option<DoraAdapter>) {
        if D != 2 || !self.group.matches(&param.id, Some(path)) {
            return (param, None);
        }
        let w = param.base();
        let device = w.device();
        let [d_in, d_out] = [w.dims()[0], w.dims()[D - 1]];
        let magnitude = row_norms(w.reshape([d_in, d_out]).cast(burn::tensor::DType::F32));
        let a_init = burn::nn::Initializer::KaimingUniform {
            gain: 1.0 / 3f64.sqrt(),
            fan_out_only: false,
        };
        let adapter = DoraAdapter {
            a: a_init.init_with([d_in, self.r], Some(d_in), Some(self.r), &device),
            b: burn::nn::Initializer::Zeros.init([self.r, d_out], &device),
            magnitude: Param::from_tensor(magnitude),
            scale: self.scale,
        };
        (param.set_require_grad(false), Some(adapter))
    }
}

/// The output of a DoRA-adapted Linear while training with dropout `p` on the adapter's input,
/// as peft computes it: `base(x) + (k − 1)·(x̃·W) + k·s·(x̃·A·B)` with `x̃` the dropped
/// input, `k = m / ‖W + s·A·B‖` (detached), the bias only in `base(x)`.
pub(crate) fn dropout_forward<const D: usize>(
    l: &burn::nn::Linear,
    d: &DoraAdapter,
    x: Tensor<D>,
    p: f64,
) -> Tensor<D> {
    let keep = 1.0 - p;
    let mask = x.random_like(burn::tensor::Distribution::Bernoulli(keep));
    let dropped = x.clone() * mask / keep;
    let w = l.weight.base().cast(d.a.val().dtype());
    let base = burn::tensor::module::linear(x, w.clone(), l.bias.as_ref().map(|b| b.val()));
    let k = d.magnitude_scale(w.clone(), d.delta());
    let plain = burn::tensor::module::linear(dropped.clone(), w, None);
    let low = burn::tensor::module::linear(dropped, d.a.val(), None);
    let lora = burn::tensor::module::linear(low, d.b.val(), None).mul_scalar(d.scale);
    let k_d: Tensor<D> = k.reshape(broadcast_shape::<D>(plain.dims()[D - 1]));
    base + plain * k_d.clone().sub_scalar(1.0) + lora * k_d
}

fn broadcast_shape<const D: usize>(n: usize) -> [usize; D] {
    let mut s = [1; D];
    s[D - 1] = n;
    s
}
