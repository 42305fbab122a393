//! The model on the GPU through wgpu: natively (Vulkan/Metal/DX12) and in the browser (WebGPU).
//!
//! - [`device`]: adapter + device with the adapter's own limits, error scopes, readback.
//! - [`weights`]: a [`TensorSink`](crate::model::loader::TensorSink) that streams each tensor,
//!   still quantized, into storage buffers (split by rows where a tensor exceeds the binding limit).
//! - [`kernels`]: WGSL sources (`shaders/`), the pipeline cache, and [`Op`]: a recorded dispatch.
//! - [`ops`]: one constructor per kernel family. Each checks shapes, builds its bind groups
//!   once, and returns an [`Op`] that the decode loop records into one compute pass per token
//!   with nothing allocated per token. Values that change per token (the position, the random
//!   step) live in one [`StepUniform`] written once per token.
//!
//! All arithmetic is f32: the test browser has no `shader-f16`, and f32 activations keep the
//! engine as exact as the CPU reference. No subgroups either: reductions go through workgroup
//! memory.

pub mod backend;
pub mod buffers;
pub mod device;
pub mod kernels;
pub mod model;
pub mod ops;
pub mod weights;

pub use buffers::{GpuBuffer, Step, StepUniform};
pub use device::{Gpu, GpuOptions, GpuReport, Tuning};
pub use kernels::{Kernels, Op};
pub use ops::attention::{KvCache, Rope};
pub use ops::sample::Sampler;
pub use weights::{GpuTensor, GpuWeights};

use crate::model::loader::LoadError;
use crate::quant::GgmlType;

/// Everything that can go wrong on the GPU side, with enough context to act on.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error(
        "no GPU adapter found ({0}). Natively Hearth needs a Vulkan, Metal or DX12 driver; on Linux \
         without a GPU install Mesa's software driver (`apt-get install mesa-vulkan-drivers`, which \
         provides lavapipe). In the browser, WebGPU must be enabled."
    )]
    NoAdapter(String),
    #[error("the GPU refused to create a device: {0}")]
    RequestDevice(String),
    #[error("GPU validation error while {what}: {message}")]
    Validation { what: String, message: String },
    #[error("the GPU ran out of memory while {what}: {message}")]
    OutOfMemory { what: String, message: String },
    #[error("internal GPU error while {what}: {message}")]
    Internal { what: String, message: String },
    #[error("GPU error outside any error scope: {0}")]
    Uncaptured(String),
    #[error("{op}: {message}")]
    Shape { op: &'static str, message: String },
    #[error("{what} needs {bytes} bytes in one binding but the device allows {limit}")]
    TooLarge { what: String, bytes: u64, limit: u64 },
    #[error("tensor {tensor:?} has type {ty}, which the {op} kernel does not support")]
    UnsupportedType { op: &'static str, tensor: String, ty: GgmlType },
    #[error("tensor {0:?} was not uploaded to the GPU")]
    MissingTensor(String),
    #[error("tensor {tensor:?}: bytes arrived out of order (at {offset}, expected {expected})")]
    OutOfOrder { tensor: String, offset: u64, expected: u64 },
    #[error("reading a GPU buffer back failed: {0}")]
    Readback(String),
    #[error(transparent)]
    Load(#[from] LoadError),
}

/// Shape checks read like assertions: `ensure(cond, "matvec", || format!(...))?`.
pub(crate) fn ensure(cond: bool, op: &'static str, message: impl FnOnce() -> String) -> Result<(), GpuError> {
    if cond {
        Ok(())
    } else {
        Err(GpuError::Shape { op, message: message() })
    }
}
