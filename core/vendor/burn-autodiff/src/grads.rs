use alloc::boxed::Box;
use burn_backend::{Backend, TensorMetadata, TensorPrimitive, tensor::FloatTensor};
use burn_std::tensor::container::TensorContainer;

use crate::{
    NodeId,
    graph::{NodeRef, Requirement},
    tensor::AutodiffTensor,
};

#[cfg(feature = "std")]
use crate::collections::HashMap;
#[cfg(feature = "std")]
use burn_backend::distributed::DistributedParams;

/// Gradient identifier.
pub type GradID = u64;

#[cfg(feature = "std")]
#[derive(Clone)]
pub(crate) struct GradSyncContext {
    pub n_required_map: HashMap<NodeId, usize>,
    pub distributed_params: HashMap<NodeId, DistributedParams>,
}

/// Hook type executed when a gradient is registered.
type OnRegisterHook = Box<dyn FnMut(&NodeId, &mut TensorContainer<GradID>) + Send + Sync>;

/// Trait for registering distributed gradients.
pub trait DistributedRegistration: Send + Sync {
    /// Performs distributed registration operations on the tensor with the corresponding [`NodeId`].
    fn on_register(&mut self, node_id: &NodeId, container: &mut TensorContainer<GradID>);
}

#[derive(Default)]
pub(crate) enum BackwardMode {
    #[default]
    Standard,
    // Distributed registration hook.
    #[cfg(feature = "std")]
    Distributed(Box<dyn FnOnce(GradSyncContext) -> Box<dyn DistributedRegistration>>),
}

/// A hook called, during a backward pass, with each leaf (a tracked parameter) as soon as its
/// gradient is final: every operation that read the leaf has added its part. The gradient is in
/// the container; the hook may remove it (normtune patch: an optimizer step inside the backward
/// pass frees each gradient as soon as it is used, instead of holding all of them at the end).
pub type FinalGradientHook = Box<dyn FnMut(NodeId, &mut Gradients) + Send + Sync>;

#[cfg(feature = "std")]
std::thread_local! {
    static FINAL_GRADIENT_HOOK: core::cell::RefCell<Option<FinalGradientHook>> =
        const { core::cell::RefCell::new(None) };
}

/// Runs `f` with `hook` installed for the first backward pass `f` runs on this thread (normtune
/// patch). Gradients the hook leaves in the container (and those of leaves whose count of
/// contributions was not reached) are in the returned gradients as usual.
#[cfg(feature = "std")]
pub fn with_final_gradient_hook<R>(hook: FinalGradientHook, f: impl FnOnce() -> R) -> R {
    FINAL_GRADIENT_HOOK.with(|h| *h.borrow_mut() = Some(hook));
    let out = f();
    FINAL_GRADIENT_HOOK.with(|h| h.borrow_mut().take());
    out
}

#[cfg(feature = "std")]
pub(crate) fn take_final_gradient_hook() -> Option<FinalGradientHook> {
    FINAL_GRADIENT_HOOK.with(|h| h.borrow_mut().take())
}

/// Gradients container used during the backward pass.
pub struct Gradients {
    container: TensorContainer<GradID>,
    /// Optional hook called after each gradient is registered, used to trigger
    /// distributed gradient synchronization operations.
    on_register: Option<OnRegisterHook>,
    /// Contributions still to come per leaf, and the hook to call when one reaches zero.
    on_final: Option<(crate::collections::HashMap<NodeId, usize>, FinalGradientHook)>,
}

impl Gradients {
    /// Creates a new gradients container.
    pub fn new<B: Backend>(root_node: NodeRef, root_tensor: FloatTensor<B>) -> Self {
        Self::new_with_hook::<B>(root_node, root_tensor, None)
    }

    /// Creates a new gradients container.
    fn new_with_hook<B: Backend>(
        root_node: NodeRef,
        root_tensor: FloatTensor<B>,
        on_register: Option<OnRegisterHook>,
    ) -> Self {
        let mut gradients = Self {
            container: TensorContainer::new(),
            on_register,
            on_final: None,
        };
        gradients.register::<B>(
            root_node.id,
            B::float_ones(
                root_tensor.shape(),
                &root_tensor.device(),
                root_tensor.dtype().into(),
            ),
        );
        gradients
    }

    /// Creates a new gradients container with a registration hook for distributed gradients.
    #[cfg(feature = "std")]
    pub fn new_distributed<B: Backend>(
        root_node: NodeRef,
        root_tensor: FloatTensor<B>,
        mut reg: Box<dyn DistributedRegistration>,
    ) -> Self {
        let on_register: Option<OnRegisterHook> = Some(Box::new(move |id, container| {
            reg.on_register(id, container);
        }));
        Self::new_with_hook::<B>(root_node, root_tensor, on_register)
    }

    /// Consumes the gradients for a given tensor.
    ///
    /// Each tensor should be consumed exactly 1 time if its gradients are only required during the
    /// backward pass, otherwise, it may be consume multiple times.
    pub fn consume<B: Backend>(&mut self, node: &NodeRef) -> FloatTensor<B> {
        match node.requirement {
            Requirement::Grad => self
                .container
                .get::<TensorPrimitive<B>>(&node.id.value)
                .map(|tensor| tensor.tensor())
                .expect("Can't consume the gradients before they are registered at least once."),
            Requirement::GradInBackward => self
                .container
                .remove::<TensorPrimitive<B>>(&node.id.value)
                .map(|tensor| tensor.tensor())
                .expect("Can't consume the gradients before they are registered at least once."),
            Requirement::None => panic!("Trying to consume the gradients for an untracked tensor"),
        }
    }

    /// Removes a grad tensor from the container.
    pub fn remove<B: Backend>(&mut self, tensor: &AutodiffTensor<B>) -> Option<FloatTensor<B>> {
        self.container
            .remove::<TensorPrimitive<B>>(&tensor.node.id.value)
            .map(|tensor| tensor.tensor())
    }

    /// Gets a grad tensor from the container.
    pub fn get<B: Backend>(&self, tensor: &AutodiffTensor<B>) -> Option<FloatTensor<B>> {
        self.container
            .get::<TensorPrimitive<B>>(&tensor.node.id.value)
            .map(|tensor| tensor.tensor())
    }

    /// Register a grad tensor in the container.
    ///
    /// If the tensor already exists, add both tensors together before saving the result.
    ///
    /// If the registered tensor is distributed, launches a syncing operation on the gradients.
    pub fn register<B: Backend>(&mut self, node_id: NodeId, value: FloatTensor<B>) {
        let out =
            if let Some(tensor_old) = self.container.remove::<TensorPrimitive<B>>(&node_id.value) {
                B::float_add(value, tensor_old.tensor())
            } else {
                value
            };

        self.container
            .register::<TensorPrimitive<B>>(node_id.value, TensorPrimitive::Float(out));

        if let Some(hook) = &mut self.on_register {
            hook(&node_id, &mut self.container);
        }

        if let Some((mut remaining, mut hook)) = self.on_final.take() {
            if let Some(left) = remaining.get_mut(&node_id) {
                *left -= 1;
                if *left == 0 {
                    remaining.remove(&node_id);
                    hook(node_id, self);
                }
            }
            self.on_final = Some((remaining, hook));
        }
    }

    /// normtune (third patch): takes the gradient registered so far for `node_id` out of the
    /// container, so an op can add its part into it in place and register the sum.
    pub(crate) fn take<B: Backend>(&mut self, node_id: NodeId) -> Option<FloatTensor<B>> {
        self.container
            .remove::<TensorPrimitive<B>>(&node_id.value)
            .map(|t| t.tensor())
    }

    /// Installs the final-gradient hook with each leaf's number of contributions.
    pub(crate) fn set_final_hook(
        &mut self,
        contributions: crate::collections::HashMap<NodeId, usize>,
        hook: FinalGradientHook,
    ) {
        self.on_final = Some((contributions, hook));
    }
}
