//! Activation buffers (f32 or u32 arrays with a known length) and the per-token uniform.

use super::{Gpu, GpuError};

/// A storage buffer of `len` 4-byte elements (f32 activations, or u32 token ids). Ops check
/// lengths against it; the kernels see `array<f32>` / `array<u32>`.
pub struct GpuBuffer {
    pub buffer: wgpu::Buffer,
    /// Elements (4 bytes each).
    pub len: u64,
    pub label: String,
}

impl GpuBuffer {
    /// A zeroed buffer of `len` elements that ops may read and write, and tests may copy out.
    pub fn new(gpu: &Gpu, len: u64, label: &str) -> Result<Self, GpuError> {
        let bytes = len.max(1) * 4;
        if bytes > gpu.binding_limit() {
            return Err(GpuError::TooLarge { what: format!("buffer {label:?}"), bytes, limit: gpu.binding_limit() });
        }
        let buffer = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        Ok(Self { buffer, len, label: label.to_string() })
    }

    pub fn from_f32(gpu: &Gpu, data: &[f32], label: &str) -> Result<Self, GpuError> {
        let b = Self::new(gpu, data.len() as u64, label)?;
        b.write(gpu, 0, bytemuck::cast_slice(data))?;
        Ok(b)
    }

    pub fn from_u32(gpu: &Gpu, data: &[u32], label: &str) -> Result<Self, GpuError> {
        let b = Self::new(gpu, data.len() as u64, label)?;
        b.write(gpu, 0, bytemuck::cast_slice(data))?;
        Ok(b)
    }

    /// Write 4-byte elements starting at element `at`.
    pub fn write(&self, gpu: &Gpu, at: u64, bytes: &[u8]) -> Result<(), GpuError> {
        let n = bytes.len() as u64 / 4;
        super::ensure(bytes.len().is_multiple_of(4) && at + n <= self.len, "GpuBuffer::write", || {
            format!("{} bytes at element {at} do not fit {:?} ({} elements)", bytes.len(), self.label, self.len)
        })?;
        if !bytes.is_empty() {
            gpu.queue.write_buffer(&self.buffer, at * 4, bytes);
        }
        Ok(())
    }

    pub fn bytes(&self) -> u64 {
        self.len * 4
    }

    pub fn binding(&self) -> wgpu::BindingResource<'_> {
        self.buffer.as_entire_binding()
    }

    pub async fn read_f32(&self, gpu: &Gpu) -> Result<Vec<f32>, GpuError> {
        let bytes = gpu.read_bytes(&self.buffer, 0, self.len * 4).await?;
        Ok(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }

    pub async fn read_u32(&self, gpu: &Gpu) -> Result<Vec<u32>, GpuError> {
        let bytes = gpu.read_bytes(&self.buffer, 0, self.len * 4).await?;
        Ok(bytes.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }
}

/// What changes from one token to the next. Every op that needs it binds the same buffer, so
/// the decode loop writes 16 bytes per token and records the same pass again.
/// WGSL: `common.wgsl::Step`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Step {
    /// Position of the first token of this step (token t of a batch sits at `pos + t`).
    pub pos: u32,
    /// Counter for the sampler's random number (see `shaders/sample.wgsl`).
    pub rand_step: u32,
    pub _pad: [u32; 2],
}

pub struct StepUniform {
    pub buffer: wgpu::Buffer,
}

impl StepUniform {
    pub fn new(gpu: &Gpu) -> Self {
        let buffer = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("step"),
            size: std::mem::size_of::<Step>() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Self { buffer }
    }

    /// Takes effect for work submitted after this call.
    pub fn write(&self, gpu: &Gpu, step: Step) {
        gpu.queue.write_buffer(&self.buffer, 0, bytemuck::bytes_of(&step));
    }
}
