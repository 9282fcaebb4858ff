//! Walking a model's parameters with their HF-style paths (enum variants left out, as they are
//! not part of HF names): the one traversal PEFT placement, reports, adapter files and export use.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;

/// Tracks the dotted path of the parameter being visited (enum variants are not part of paths,
/// as they are not part of HF names).
#[derive(Debug, Default)]
pub struct PathStack(Vec<String>);

impl PathStack {
    pub fn enter(&mut self, name: &str, container: &str) {
        if !container.starts_with("Enum") {
            self.0.push(name.to_string());
        }
    }
    pub fn exit(&mut self, container: &str) {
        if !container.starts_with("Enum") {
            self.0.pop();
        }
    }
    pub fn segments(&self) -> &[String] {
        &self.0
    }
}

/// A [`PathStack`] plus the type of each module on the way (`Struct:Linear`, ...), for visitors
/// that care which kind of module owns a parameter.
#[derive(Debug, Default)]
pub struct Scope {
    path: PathStack,
    containers: Vec<String>,
}

impl Scope {
    pub fn enter(&mut self, name: &str, container: &str) {
        self.path.enter(name, container);
        self.containers.push(container.to_string());
    }
    pub fn exit(&mut self, container: &str) {
        self.path.exit(container);
        self.containers.pop();
    }
    pub fn segments(&self) -> &[String] {
        self.path.segments()
    }
    /// The type of the module that owns the parameter being visited.
    pub fn container(&self) -> &str {
        self.containers.last().map(String::as_str).unwrap_or("")
    }
}

/// One float parameter of a model.
#[derive(Debug, Clone)]
pub struct ParamRow {
    /// Path segments (enum variants left out), leaf last.
    pub path: Vec<String>,
    /// Type of the module that owns it, e.g. `Struct:Linear`.
    pub container: String,
    /// burn's parameter id.
    pub id: burn::module::ParamId,
    /// Shape.
    pub shape: Vec<usize>,
    /// Whether it trains (read from the autodiff flag).
    pub trainable: bool,
    /// Values, when asked for.
    pub values: Option<Vec<f32>>,
}

impl ParamRow {
    /// The dotted path.
    pub fn dotted(&self) -> String {
        self.path.join(".")
    }
}

/// Every float parameter of `module` in module order; values are read (synchronously) for the
/// rows `want_values(path, container, trainable)` accepts.
pub fn params<M: Module>(
    module: &M,
    want_values: impl Fn(&[String], &str, bool) -> bool,
) -> Vec<ParamRow> {
    struct V<F> {
        scope: Scope,
        rows: Vec<ParamRow>,
        want: F,
    }
    impl<F: Fn(&[String], &str, bool) -> bool> ModuleVisitor for V<F> {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.scope.enter(name, container_type);
        }
        fn exit_module(&mut self, _name: &str, container_type: &str) {
            self.scope.exit(container_type);
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let path = self.scope.segments().to_vec();
            let container = self.scope.container().to_string();
            let t = param.val();
            let trainable = t.is_require_grad();
            let values = (self.want)(&path, &container, trainable)
                .then(|| t.clone().into_data().iter::<f32>().collect());
            self.rows.push(ParamRow {
                container,
                id: param.id,
                shape: t.dims().to_vec(),
                trainable,
                values,
                path,
            });
        }
    }
    let mut v = V {
        scope: Scope::default(),
        rows: Vec::new(),
        want: want_values,
    };
    module.visit(&mut v);
    v.rows
}

/// Every parameter's path (segments) and size, without touching values: shapes are read
/// lazily, so an uninitialised parameter stays so (a 7B architecture is walked without its
/// weights).
pub fn lazy_params<M: Module>(module: &M) -> Vec<(Vec<String>, usize)> {
    struct V {
        path: PathStack,
        out: Vec<(Vec<String>, usize)>,
    }
    impl ModuleVisitor for V {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.path.enter(name, container_type);
        }
        fn exit_module(&mut self, _name: &str, container_type: &str) {
            self.path.exit(container_type);
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.out.push((
                self.path.segments().to_vec(),
                param.lazy_shape().num_elements(),
            ));
        }
    }
    let mut v = V {
        path: PathStack::default(),
        out: Vec::new(),
    };
    module.visit(&mut v);
    v.out
}

/// Every parameter path, dotted, without touching values.
pub fn param_paths<M: Module>(module: &M) -> Vec<String> {
    lazy_params(module)
        .into_iter()
        .map(|(path, _)| path.join("."))
        .collect()
}

/// Host transpose of a row-major `[rows, cols]` matrix.
pub fn transposed(shape: &[usize], values: &[f32]) -> (Vec<usize>, Vec<f32>) {
    let (r, c) = (shape[0], shape[1]);
    let mut out = vec![0f32; values.len()];
    for i in 0..r {
        for j in 0..c {
            out[j * r + i] = values[i * c + j];
        }
    }
    (vec![c, r], out)
}

/// A copy of `module` whose trainable parameters live on `host` (read back asynchronously, so
/// this works on WebGPU, where synchronous readback is impossible), still trainable there, with
/// their ids; frozen parameters stay where they are, unread. What the synchronous adapter and
/// checkpoint writers need from a model trained on any device.
pub async fn trainable_to_host<M: Module>(
    module: &M,
    host: &burn::tensor::Device,
) -> crate::Result<M> {
    struct Collect(Vec<(burn::module::ParamId, Vec<usize>, Tensor<1>)>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let t = param.val();
            if t.is_require_grad() {
                let shape = t.dims().to_vec();
                let n = shape.iter().product::<usize>();
                self.0.push((param.id, shape, t.inner().reshape([n])));
            }
        }
    }
    let mut c = Collect(Vec::new());
    module.visit(&mut c);
    let mut values = std::collections::HashMap::new();
    for (id, shape, t) in c.0 {
        let data = t.into_data_async().await.map_err(crate::Error::device)?;
        let v: Vec<f32> = data.iter::<f32>().collect();
        values.insert(id, (shape, v));
    }
    struct Place<'a> {
        values: std::collections::HashMap<burn::module::ParamId, (Vec<usize>, Vec<f32>)>,
        host: &'a burn::tensor::Device,
    }
    impl burn::module::ModuleMapper for Place<'_> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            match self.values.remove(&param.id) {
                Some((shape, v)) => {
                    let t =
                        Tensor::<D>::from_data(burn::tensor::TensorData::new(v, shape), self.host)
                            .require_grad();
                    Param::initialized(param.id, t)
                }
                None => param,
            }
        }
    }
    Ok(module.clone().map(&mut Place { values, host }))
}

/// A storage dtype for frozen weights (`frozen_dtype` in a run config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FrozenDtype {
    /// IEEE half precision (on the CPU: `gemm`'s f16 kernels, f32 accumulation).
    F16,
    /// bfloat16 (f32's range; on the CPU each product converts its operands to f32).
    Bf16,
}

impl FrozenDtype {
    /// burn's dtype.
    pub fn dtype(self) -> burn::tensor::DType {
        match self {
            FrozenDtype::F16 => burn::tensor::DType::F16,
            FrozenDtype::Bf16 => burn::tensor::DType::BF16,
        }
    }
    /// Bytes per value.
    pub fn bytes(self) -> u64 {
        2
    }
    /// As a config or command line writes it.
    pub fn name(self) -> &'static str {
        match self {
            FrozenDtype::F16 => "f16",
            FrozenDtype::Bf16 => "bf16",
        }
    }
}

impl std::str::FromStr for FrozenDtype {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f16" => Ok(FrozenDtype::F16),
            "bf16" => Ok(FrozenDtype::Bf16),
            other => Err(format!("`{other}` is not a frozen dtype (f16, bf16)")),
        }
    }
}

/// Whether a parameter at `path` in a module of type `container` is a frozen-weight candidate:
/// the weight of a `Linear` or an `Embedding` (not a norm, bias or LoRA factor).
fn castable(path: &[String], container: &str) -> bool {
    path.last().is_some_and(|l| l == "weight")
        && matches!(container, "Struct:Linear" | "Struct:Embedding")
}

/// `module` with every frozen `Linear` and `Embedding` weight stored as `dtype`, and how many
/// values were converted. A weight that trains, or carries a LoRA adapter (its factors train
/// in f32 beside it), is left as it is. The module's forward must apply such weights in their
/// own dtype ([`crate::models::common::lora_linear`], `LlamaModel::embed`): only the LLaMA
/// decoder does so far.
pub fn store_frozen<M: Module>(module: M, dtype: burn::tensor::DType) -> (M, usize) {
    struct Cast {
        scope: Scope,
        dtype: burn::tensor::DType,
        count: usize,
    }
    impl burn::module::ModuleMapper for Cast {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.scope.enter(name, container_type);
        }
        fn exit_module(&mut self, _name: &str, container_type: &str) {
            self.scope.exit(container_type);
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            if D != 2
                || !castable(self.scope.segments(), self.scope.container())
                || param.adapter().is_some()
                || param.is_require_grad()
                || param.dtype() == self.dtype
            {
                return param;
            }
            self.count += param.lazy_shape().num_elements();
            let dtype = self.dtype;
            param.map(|t| t.cast(dtype))
        }
    }
    let mut c = Cast {
        scope: Scope::default(),
        dtype,
        count: 0,
    };
    let m = module.map(&mut c);
    (m, c.count)
}

/// How many values [`store_frozen`] would convert once the parameters `trainable(path)` names
/// train, without touching (or initialising) any: the memory estimate, for models known only
/// from their config. `prefix` is prepended to the paths handed to `trainable`.
pub fn frozen_castable<M: Module>(
    module: &M,
    prefix: &[&str],
    trainable: impl Fn(&[String]) -> bool,
) -> usize {
    struct Count<F> {
        scope: Scope,
        count: usize,
        trainable: F,
    }
    impl<F: Fn(&[String]) -> bool> ModuleVisitor for Count<F> {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.scope.enter(name, container_type);
        }
        fn exit_module(&mut self, _name: &str, container_type: &str) {
            self.scope.exit(container_type);
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if D == 2
                && castable(self.scope.segments(), self.scope.container())
                && param.adapter().is_none()
                && !(self.trainable)(self.scope.segments())
            {
                self.count += param.lazy_shape().num_elements();
            }
        }
    }
    let mut c = Count {
        scope: Scope::default(),
        count: 0,
        trainable,
    };
    for p in prefix {
        c.scope.enter(p, "Struct");
    }
    module.visit(&mut c);
    c.count
}
