//! The optimizer step inside the backward pass, on the CPU (`flex`).
//!
//! A plain step holds every trainable parameter's gradient at once at the end of the backward
//! pass, beside the parameters and AdamW's two moments: full fine-tuning peaks at four copies of
//! the model. Here each parameter is updated as soon as its gradient is final (every operation
//! that read it has added its part; burn-autodiff counts them, `core/vendor/burn-autodiff`,
//! NORMTUNE.md), and that gradient is dropped at once, so gradients never all exist together.
//!
//! The update is the same call as a plain step's (the trainer's `ModuleOptimizer`, with its
//! clipping, one parameter at a time), so the results are bit for bit the same (tested). For
//! the CPU AdamW to update a parameter in place, nothing else may hold it: the model's
//! trainable parameters are taken out of it for the backward pass (the graph's own references
//! are gone once the parameter's last reader has run) and put back afterwards.
//!
//! Used by [`super::Trainer::step`] when a micro-batch is a whole optimizer step, on the CPU,
//! without gradient checkpointing or distributed parameters; every other case takes the plain
//! path.

use crate::models::Model;
use burn::backend::autodiff::grads::{FinalGradientHook, Gradients, with_final_gradient_hook};
use burn::backend::{Autodiff, BackendTypes, Flex};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::Tensor;
use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

type AdTensor = <Autodiff<Flex> as BackendTypes>::FloatTensorPrimitive;
type FlexTensor = <Flex as BackendTypes>::FloatTensorPrimitive;
type Updated = Box<dyn Any + Send>;
type Update = fn(&mut ModuleOptimizer, f64, ParamId, AdTensor, Option<FlexTensor>) -> Updated;
type TakeGrad = fn(&mut burn::tensor::Gradients, &AdTensor) -> Option<FlexTensor>;

/// A trainable parameter taken out of the model for the backward pass.
struct Slot {
    id: ParamId,
    tensor: AdTensor,
    /// [`update`] for the parameter's rank.
    update: Update,
    /// [`take_grad`] for the parameter's rank.
    take_grad: TakeGrad,
}

/// Whether every trainable parameter of `model` is an f32 flex tensor tracked without
/// checkpointing or distribution (the cases this path covers).
pub(super) fn applies(model: &Model) -> bool {
    struct Check(bool);
    impl ModuleVisitor for Check {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let t = param.val();
            if t.is_require_grad() {
                self.0 &= t.dtype() == burn::tensor::DType::F32
                    && !t.is_distributed()
                    && t.try_into_primitive::<Autodiff<Flex>>().is_ok();
            }
        }
    }
    let mut check = Check(true);
    model.visit(&mut check);
    check.0
}

/// One optimizer step at `lr` with the backward pass of `loss`: each trainable parameter of
/// `model` is updated by `optim` as soon as its gradient is final. Returns the updated model and
/// how many parameters were updated only after the pass (a gradient the hook did not see
/// complete).
pub(super) fn step(
    model: Model,
    optim: &mut ModuleOptimizer,
    lr: f64,
    loss: Tensor<1>,
) -> (Model, usize) {
    let mut take = Take(HashMap::new());
    let model = model.map(&mut take);
    struct State {
        optim: ModuleOptimizer,
        slots: HashMap<u64, Slot>,
        done: HashMap<ParamId, Updated>,
        lr: f64,
    }
    // The optimizer moves into the hook for the pass (its state is updated in place there) and
    // comes back after it; a fresh one holds its place meanwhile.
    let placeholder = ModuleOptimizer::from(super::adamw::FusedAdamW::new(0.0));
    let state = Arc::new(Mutex::new(State {
        optim: std::mem::replace(optim, placeholder),
        slots: take.0,
        done: HashMap::new(),
        lr,
    }));
    let hooked = state.clone();
    let hook: FinalGradientHook = Box::new(move |node, grads: &mut Gradients| {
        let mut s = hooked
            .lock()
            .expect("no panic while holding the step's state");
        if let Some(slot) = s.slots.remove(&node.value) {
            let grad = grads.remove::<Flex>(&slot.tensor);
            let lr = s.lr;
            let out = (slot.update)(&mut s.optim, lr, slot.id, slot.tensor, grad);
            s.done.insert(slot.id, out);
        }
    });
    let mut grads = with_final_gradient_hook(hook, || loss.backward());
    // The hook (and its share of the state) lives in the gradients until they are dropped; a
    // gradient the hook did not see complete (none in the models tested) is still there, as
    // after a plain backward pass. Parameters without a gradient stay as they were.
    let left = {
        let mut s = state
            .lock()
            .expect("no panic while holding the step's state");
        std::mem::take(&mut s.slots)
    };
    let late_grads: Vec<_> = left
        .into_values()
        .map(|slot| ((slot.take_grad)(&mut grads, &slot.tensor), slot))
        .collect();
    drop(grads);
    let State {
        optim: mut returned,
        mut done,
        lr,
        ..
    } = Arc::into_inner(state)
        .expect("the hook is dropped with the gradients")
        .into_inner()
        .expect("no panic while holding the step's state");
    let mut late = 0;
    for (grad, slot) in late_grads {
        late += usize::from(grad.is_some());
        done.insert(
            slot.id,
            (slot.update)(&mut returned, lr, slot.id, slot.tensor, grad),
        );
    }
    *optim = returned;
    (model.map(&mut PutBack(done)), late)
}

/// A leaf's gradient out of the gradients a backward pass returned.
fn take_grad<const D: usize>(
    grads: &mut burn::tensor::Gradients,
    tensor: &AdTensor,
) -> Option<FlexTensor> {
    Tensor::<D>::from_primitive::<Autodiff<Flex>>(tensor.clone())
        .grad_remove(grads)
        .map(|g| g.try_into_primitive::<Flex>().expect("a flex gradient"))
}

/// The optimizer's update of one parameter of rank `D` (its gradient as the plain path passes it).
fn update<const D: usize>(
    optim: &mut ModuleOptimizer,
    lr: f64,
    id: ParamId,
    tensor: AdTensor,
    grad: Option<FlexTensor>,
) -> Updated {
    let tensor = Tensor::<D>::from_primitive::<Autodiff<Flex>>(tensor);
    let Some(grad) = grad else {
        return Box::new(tensor);
    };
    let mut grads = GradientsParams::new();
    grads.register(id, Tensor::<D>::from_primitive::<Flex>(grad));
    Box::new(
        optim
            .step(lr, Param::initialized(id, tensor), grads)
            .into_value(),
    )
}

/// Takes the trainable parameters out of a model, leaving one-element stand-ins.
struct Take(HashMap<u64, Slot>);

impl ModuleMapper for Take {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        if !tensor.is_require_grad() {
            return Param::from_mapped_value(id, tensor, mapper);
        }
        let device = tensor.device();
        let ad = tensor
            .try_into_primitive::<Autodiff<Flex>>()
            .expect("checked by `applies`");
        self.0.insert(
            ad.id().value,
            Slot {
                id,
                tensor: ad,
                update: update::<D>,
                take_grad: take_grad::<D>,
            },
        );
        Param::from_mapped_value(id, Tensor::zeros([1; D], &device), mapper)
    }
}

/// Puts updated parameters back in place of the stand-ins (every place a parameter id occurs,
/// should a model hold one parameter twice).
struct PutBack(HashMap<ParamId, Updated>);

impl ModuleMapper for PutBack {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        match self.0.get(&id) {
            Some(updated) => {
                let updated = updated
                    .downcast_ref::<Tensor<D>>()
                    .expect("a parameter keeps its rank")
                    .clone();
                Param::from_mapped_value(id, updated, mapper)
            }
            None => Param::from_mapped_value(id, tensor, mapper),
        }
    }
}
