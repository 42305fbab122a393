//! WGSL sources, the pipeline cache, and [`Op`]: a pipeline with its bind groups and
//! workgroup counts, built once and recorded into a compute pass any number of times.
//!
//! WGSL has no `#include`: a kernel's module is `common.wgsl`, then (for kernels that read
//! quantized weights) `const WTYPE: u32 = <ggml type id>;` and `quant.wgsl`, then the kernel's
//! own file. Modules are cached by (shader, weight type) and pipelines by (shader, weight
//! type, entry point); every layout is derived from the shader (`layout: None`), so bind
//! groups list exactly the bindings an entry point uses.

use super::{Gpu, GpuError};
use crate::quant::GgmlType;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use wgpu::util::DeviceExt;

const COMMON: &str = include_str!("../../shaders/common.wgsl");
const QUANT: &str = include_str!("../../shaders/quant.wgsl");

/// A kernel family: one WGSL file in `shaders/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shader {
    /// `matvec`, `matmul` (entry points), per weight type.
    Matvec,
    /// `embed`, per weight type.
    Embed,
    /// `rms_norm`.
    Norm,
    /// `add`, `swiglu`.
    Elementwise,
    /// `rope`.
    Rope,
    /// `kv_append`, `attention_part`, `attention_combine`.
    Attention,
    /// `argmax`, `sample`.
    Sample,
}

impl Shader {
    fn source(self) -> &'static str {
        match self {
            Shader::Matvec => include_str!("../../shaders/matvec.wgsl"),
            Shader::Embed => include_str!("../../shaders/embed.wgsl"),
            Shader::Norm => include_str!("../../shaders/norm.wgsl"),
            Shader::Elementwise => include_str!("../../shaders/elementwise.wgsl"),
            Shader::Rope => include_str!("../../shaders/rope.wgsl"),
            Shader::Attention => include_str!("../../shaders/attention.wgsl"),
            Shader::Sample => include_str!("../../shaders/sample.wgsl"),
        }
    }

    fn reads_weights(self) -> bool {
        matches!(self, Shader::Matvec | Shader::Embed)
    }

    /// The full module text (public so tools can dump what the GPU compiles).
    pub fn module_source(self, wtype: Option<GgmlType>) -> String {
        match (self.reads_weights(), wtype) {
            (true, Some(ty)) => format!("{COMMON}\nconst WTYPE: u32 = {}u;\n{QUANT}\n{}", ty.0, self.source()),
            _ => format!("{COMMON}\n{}", self.source()),
        }
    }
}

/// Weight types the dequantizing kernels (matvec, matmul, embed) handle.
pub const KERNEL_TYPES: [GgmlType; 11] = GgmlType::SUPPORTED;

type ModuleKey = (Shader, u32);
/// Pipeline-overridable constants (WGSL `override`) an op specialises a pipeline with.
pub type Constants = &'static [(&'static str, u32)];
type PipelineKey = (Shader, u32, &'static str, Constants);

/// Pipelines compiled so far; ops ask here so each (shader, type, entry) compiles once.
pub struct Kernels {
    pub gpu: Gpu,
    modules: Mutex<HashMap<ModuleKey, wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<PipelineKey, Arc<wgpu::ComputePipeline>>>,
    /// The largest scratch buffer handed out so far (see [`Kernels::scratch`]).
    scratch: Mutex<Option<wgpu::Buffer>>,
}

impl Kernels {
    pub fn new(gpu: &Gpu) -> Self {
        Self { gpu: gpu.clone(), modules: Mutex::default(), pipelines: Mutex::default(), scratch: Mutex::default() }
    }

    /// A storage buffer of at least `bytes` for results that live only within one op (the
    /// attention's per-chunk partials). Dispatches run in submission order, so every op can
    /// share one: ops reuse the largest so far instead of each layer holding its own.
    pub(crate) fn scratch(&self, bytes: u64) -> wgpu::Buffer {
        let mut s = lock(&self.scratch);
        match &*s {
            Some(b) if b.size() >= bytes => b.clone(),
            _ => {
                let b = self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("op scratch"),
                    size: bytes.next_multiple_of(4).max(4),
                    usage: wgpu::BufferUsages::STORAGE,
                    mapped_at_creation: false,
                });
                *s = Some(b.clone());
                b
            }
        }
    }

    /// The pipeline for `entry` of `shader` (specialised to `wtype` for weight-reading
    /// kernels), compiling it under an error scope so a WGSL or validation error comes back as
    /// a [`GpuError`] naming the kernel.
    pub async fn pipeline(
        &self,
        shader: Shader,
        wtype: Option<GgmlType>,
        entry: &'static str,
    ) -> Result<Arc<wgpu::ComputePipeline>, GpuError> {
        self.pipeline_with(shader, wtype, entry, &[]).await
    }

    /// [`Kernels::pipeline`] with values for the module's `override` constants.
    pub async fn pipeline_with(
        &self,
        shader: Shader,
        wtype: Option<GgmlType>,
        entry: &'static str,
        constants: Constants,
    ) -> Result<Arc<wgpu::ComputePipeline>, GpuError> {
        let ty = wtype.filter(|_| shader.reads_weights()).map_or(u32::MAX, |t| t.0);
        let key = (shader, ty, entry, constants);
        if let Some(p) = lock(&self.pipelines).get(&key) {
            return Ok(p.clone());
        }
        let what = match wtype {
            Some(t) if shader.reads_weights() => format!("compiling {shader:?}::{entry} for {t}"),
            _ => format!("compiling {shader:?}::{entry}"),
        };
        let scope = self.gpu.scope();
        let module = lock(&self.modules)
            .entry((shader, ty))
            .or_insert_with(|| {
                self.gpu.device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(&what),
                    source: wgpu::ShaderSource::Wgsl(shader.module_source(wtype).into()),
                })
            })
            .clone();
        let values: Vec<(&str, f64)> = constants.iter().map(|&(name, v)| (name, v as f64)).collect();
        let pipeline = self.gpu.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry),
            layout: None,
            module: &module,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &values,
                // Every kernel writes the workgroup memory it reads first, so skip wgpu's
                // zero-fill (an extra pass and barrier per workgroup). Browsers zero it anyway.
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        if let Err(e) = scope.check(&what).await {
            // Don't keep a module that failed to compile.
            lock(&self.modules).remove(&(shader, ty));
            return Err(e);
        }
        let pipeline = Arc::new(pipeline);
        lock(&self.pipelines).insert(key, pipeline.clone());
        Ok(pipeline)
    }

    /// A small uniform buffer holding `value` (an op's fixed shape parameters).
    pub(crate) fn uniform<T: bytemuck::Pod>(&self, label: &str, value: &T) -> wgpu::Buffer {
        self.gpu.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::bytes_of(value),
            usage: wgpu::BufferUsages::UNIFORM,
        })
    }

    /// A read-only storage buffer holding `data` (small tables such as RoPE frequencies).
    pub(crate) fn storage_f32(&self, label: &str, data: &[f32]) -> wgpu::Buffer {
        self.gpu.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::cast_slice(data),
            usage: wgpu::BufferUsages::STORAGE,
        })
    }

    /// A bind group for group 0 of `pipeline` from (binding, resource) pairs.
    pub(crate) fn bind(
        &self,
        label: &str,
        pipeline: &wgpu::ComputePipeline,
        entries: &[(u32, wgpu::BindingResource<'_>)],
    ) -> wgpu::BindGroup {
        let entries: Vec<_> =
            entries.iter().map(|(binding, resource)| wgpu::BindGroupEntry { binding: *binding, resource: resource.clone() }).collect();
        self.gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(label),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        })
    }

    /// Encode `ops` in order into one compute pass, submit, and wait (native), reporting any
    /// error. For tests, the first dispatch of a model, and debugging.
    pub async fn run(&self, ops: &[&Op]) -> Result<(), GpuError> {
        let scope = self.gpu.scope();
        let mut enc = self.gpu.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("hearth run") });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("hearth run"), timestamp_writes: None });
            for op in ops {
                op.record(&mut pass);
            }
        }
        self.gpu.queue.submit([enc.finish()]);
        let names: Vec<_> = ops.iter().map(|o| o.name.as_str()).collect();
        scope.check(&format!("running {}", names.join(", "))).await?;
        self.gpu.wait_idle()?;
        self.gpu.take_uncaptured()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the cache lock leaves the map itself consistent.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One recorded dispatch.
struct Dispatch {
    pipeline: Arc<wgpu::ComputePipeline>,
    bind_group: wgpu::BindGroup,
    groups: [u32; 3],
}

/// A kernel ready to run: its dispatches in order, each a pipeline, a bind group and a
/// workgroup count (a matvec over a row-split tensor dispatches once per part; attention
/// runs a partial pass and a combining pass). Built once at load; recording allocates nothing.
pub struct Op {
    pub name: String,
    dispatches: Vec<Dispatch>,
}

impl Op {
    pub(crate) fn new(name: impl Into<String>) -> Self {
        Self { name: name.into(), dispatches: Vec::new() }
    }

    pub(crate) fn push(&mut self, pipeline: &Arc<wgpu::ComputePipeline>, bind_group: wgpu::BindGroup, groups: [u32; 3]) {
        self.dispatches.push(Dispatch { pipeline: pipeline.clone(), bind_group, groups });
    }

    pub fn dispatch_count(&self) -> usize {
        self.dispatches.len()
    }

    /// Record this op's dispatches into `pass`.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        let mut current: Option<&Arc<wgpu::ComputePipeline>> = None;
        for d in &self.dispatches {
            if !current.is_some_and(|p| Arc::ptr_eq(p, &d.pipeline)) {
                pass.set_pipeline(&d.pipeline);
                current = Some(&d.pipeline);
            }
            pass.set_bind_group(0, &d.bind_group, &[]);
            pass.dispatch_workgroups(d.groups[0], d.groups[1], d.groups[2]);
        }
    }
}
