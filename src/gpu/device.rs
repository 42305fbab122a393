//! Adapter and device: the adapter's own limits, optional `shader-f16`, error scopes that turn
//! wgpu errors into [`GpuError`]s, and buffer readback.
//!
//! Everything is `async` so the browser build can await the WebGPU promises; native callers
//! block with [`Gpu::new_blocking`] (pollster), where the futures are ready almost at once.

use super::GpuError;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// Knobs for device creation. The defaults take everything the adapter offers.
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// Cap the bytes per storage binding below the device's limit. Tests force ~1 MiB so tiny
    /// models take the row-split path that Llama 3 8B takes at 128 MiB.
    pub max_binding_bytes: Option<u64>,
    /// Cap the workgroups per dispatch dimension used when laying out grids, so tests run the
    /// 2-D grid path (needed for the 128256-row output head) without 65536-row matrices.
    pub max_workgroups_per_dim: Option<u32>,
    pub power_preference: wgpu::PowerPreference,
    /// Never request `shader-f16`, even where offered (no kernel needs it).
    pub disable_f16: bool,
    /// Lay kernels out for this kind of device instead of the adapter's own (tests run the
    /// GPU layout on lavapipe this way).
    pub tuning: Option<Tuning>,
}

/// How kernels lay their work out. The same WGSL serves both, specialised by `override`
/// constants (see `shaders/matvec.wgsl`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tuning {
    /// Many threads per row with coalesced reads, reductions in workgroup memory.
    Gpu,
    /// For WebGPU/Vulkan implemented on the CPU (lavapipe, SwiftShader): a workgroup runs as
    /// the SIMD lanes of one CPU thread, where every barrier and every memory access (paid
    /// lane by lane) costs far more than arithmetic, so each thread owns whole rows.
    Cpu,
}

/// What the adapter offers and what Hearth chose, for logs, the CLI and bug reports.
#[derive(Clone, Debug, serde::Serialize)]
pub struct GpuReport {
    pub adapter: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    pub max_storage_buffer_binding_size: u64,
    pub max_buffer_size: u64,
    pub max_storage_buffers_per_shader_stage: u32,
    pub max_compute_workgroup_storage_size: u32,
    pub max_compute_invocations_per_workgroup: u32,
    pub max_compute_workgroups_per_dimension: u32,
    /// Bytes per binding Hearth actually uses (after options and the 2 GiB cap).
    pub binding_limit: u64,
    /// Workgroups per dispatch dimension Hearth actually uses.
    pub max_workgroups_per_dim: u32,
    pub shader_f16: bool,
    pub tuning: Tuning,
}

/// The device, its queue and the limits every op lays itself out by. Cheap to clone.
#[derive(Clone)]
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    /// The limits the device was created with (the adapter's own).
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    binding_limit: u64,
    max_groups: u32,
    pub tuning: Tuning,
    /// Errors that escaped every error scope (wgpu's default would panic).
    uncaptured: Arc<Mutex<Vec<String>>>,
}

/// Kernels index weights with u32 byte offsets, so one binding never exceeds 2 GiB (with room
/// for the last word's neighbour). Real tensors are far smaller (Llama 3 8B's largest: 431 MB).
const MAX_BINDING_BYTES: u64 = 1 << 31;

impl Gpu {
    pub async fn new(opts: &GpuOptions) -> Result<Self, GpuError> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: opts.power_preference,
                ..Default::default()
            })
            .await
            .map_err(|e| GpuError::NoAdapter(e.to_string()))?;
        let info = adapter.get_info();
        // Ask for everything the adapter has: the defaults (128 MiB bindings) would split
        // tensors that the hardware can bind whole.
        let limits = adapter.limits();
        let mut features = wgpu::Features::empty();
        if !opts.disable_f16 && adapter.features().contains(wgpu::Features::SHADER_F16) {
            features |= wgpu::Features::SHADER_F16;
        }
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("hearth"),
                required_features: features,
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| GpuError::RequestDevice(e.to_string()))?;

        let uncaptured = Arc::new(Mutex::new(Vec::new()));
        let sink = uncaptured.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut v) = sink.lock() {
                v.push(e.to_string());
            }
        }));
        let sink = uncaptured.clone();
        device.set_device_lost_callback(move |reason, message| {
            if let Ok(mut v) = sink.lock() {
                v.push(format!("device lost ({reason:?}): {message}"));
            }
        });

        let mut binding_limit = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size).min(MAX_BINDING_BYTES);
        if let Some(cap) = opts.max_binding_bytes {
            binding_limit = binding_limit.min(cap);
        }
        binding_limit &= !3; // whole u32 words
        let mut max_groups = limits.max_compute_workgroups_per_dimension;
        if let Some(cap) = opts.max_workgroups_per_dim {
            max_groups = max_groups.min(cap.max(1));
        }
        let tuning = opts.tuning.unwrap_or(match info.device_type {
            wgpu::DeviceType::Cpu => Tuning::Cpu,
            _ => Tuning::Gpu,
        });
        Ok(Self { features: device.features(), device, queue, info, limits, binding_limit, max_groups, tuning, uncaptured })
    }

    /// Native only: create the device by blocking on [`Gpu::new`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new_blocking(opts: &GpuOptions) -> Result<Self, GpuError> {
        pollster::block_on(Self::new(opts))
    }

    /// Largest storage binding any op or weight part may use, in bytes (a multiple of 4).
    pub fn binding_limit(&self) -> u64 {
        self.binding_limit
    }

    /// Largest workgroup count per dispatch dimension that grids are laid out with.
    pub fn max_workgroups_per_dim(&self) -> u32 {
        self.max_groups
    }

    pub fn report(&self) -> GpuReport {
        let l = &self.limits;
        GpuReport {
            adapter: self.info.name.clone(),
            backend: format!("{:?}", self.info.backend),
            device_type: format!("{:?}", self.info.device_type),
            driver: self.info.driver.clone(),
            driver_info: self.info.driver_info.clone(),
            max_storage_buffer_binding_size: l.max_storage_buffer_binding_size,
            max_buffer_size: l.max_buffer_size,
            max_storage_buffers_per_shader_stage: l.max_storage_buffers_per_shader_stage,
            max_compute_workgroup_storage_size: l.max_compute_workgroup_storage_size,
            max_compute_invocations_per_workgroup: l.max_compute_invocations_per_workgroup,
            max_compute_workgroups_per_dimension: l.max_compute_workgroups_per_dimension,
            binding_limit: self.binding_limit,
            max_workgroups_per_dim: self.max_groups,
            shader_f16: self.features.contains(wgpu::Features::SHADER_F16),
            tuning: self.tuning,
        }
    }

    /// Lay `groups` workgroups out as an (x, y) grid within the per-dimension limit; kernels
    /// recover the linear index as `wid.y * num_workgroups.x + wid.x` and skip the excess.
    pub fn grid(&self, groups: u64, what: &'static str) -> Result<(u32, u32), GpuError> {
        let max = self.max_groups as u64;
        let x = groups.clamp(1, max);
        let y = groups.div_ceil(x).max(1);
        super::ensure(y <= max, what, || format!("{groups} workgroups do not fit a {max} x {max} grid"))?;
        Ok((x as u32, y as u32))
    }

    /// Start capturing errors (validation, out-of-memory, internal) from what follows on this
    /// thread; [`ErrorScope::check`] turns the first one into a [`GpuError`].
    pub fn scope(&self) -> ErrorScope {
        let internal = self.device.push_error_scope(wgpu::ErrorFilter::Internal);
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        ErrorScope { internal, oom, validation }
    }

    /// Errors that escaped every scope since the last call (e.g. a dispatch recorded outside a
    /// scope), as one [`GpuError::Uncaptured`].
    pub fn take_uncaptured(&self) -> Result<(), GpuError> {
        let errors = match self.uncaptured.lock() {
            Ok(mut v) => std::mem::take(&mut *v),
            Err(_) => return Ok(()),
        };
        if errors.is_empty() {
            Ok(())
        } else {
            Err(GpuError::Uncaptured(errors.join("; ")))
        }
    }

    /// Wait for submitted work where waiting is possible (native). In the browser the queue runs
    /// on its own; map callbacks fire from the event loop.
    pub fn wait_idle(&self) -> Result<(), GpuError> {
        #[cfg(not(target_arch = "wasm32"))]
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| GpuError::Internal { what: "waiting for the GPU".into(), message: e.to_string() })?;
        Ok(())
    }

    /// Copy `len` bytes at `offset` of `buffer` (which needs COPY_SRC) to the CPU. Allocates a
    /// staging buffer per call: for tests and debugging, not for the decode loop.
    pub async fn read_bytes(&self, buffer: &wgpu::Buffer, offset: u64, len: u64) -> Result<Vec<u8>, GpuError> {
        let padded = len.next_multiple_of(4);
        let scope = self.scope();
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("hearth readback"),
            size: padded.max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(buffer, offset, &staging, 0, padded);
        self.queue.submit([enc.finish()]);
        scope.check("copying a buffer for readback").await?;

        let (tx, rx) = oneshot();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| tx.send(r));
        self.wait_idle()?;
        rx.await.map_err(|e| GpuError::Readback(e.to_string()))?;
        let bytes = staging.slice(..).get_mapped_range().map_err(|e| GpuError::Readback(e.to_string()))?[..len as usize].to_vec();
        staging.unmap();
        Ok(bytes)
    }
}

/// Three pushed error scopes; pop them with [`ErrorScope::check`] (dropping pops silently).
#[must_use = "check() the scope to see its errors"]
pub struct ErrorScope {
    internal: wgpu::ErrorScopeGuard,
    oom: wgpu::ErrorScopeGuard,
    validation: wgpu::ErrorScopeGuard,
}

impl ErrorScope {
    /// Pop the scopes (innermost first) and report the first error, saying what we were doing.
    pub async fn check(self, what: &str) -> Result<(), GpuError> {
        let validation = self.validation.pop();
        let oom = self.oom.pop();
        let internal = self.internal.pop();
        let (validation, oom, internal) = (validation.await, oom.await, internal.await);
        let what = what.to_string();
        if let Some(e) = oom {
            return Err(GpuError::OutOfMemory { what, message: e.to_string() });
        }
        if let Some(e) = validation {
            return Err(GpuError::Validation { what, message: e.to_string() });
        }
        if let Some(e) = internal {
            return Err(GpuError::Internal { what, message: e.to_string() });
        }
        Ok(())
    }
}

/// A minimal one-shot channel so map callbacks can be awaited on both targets without pulling
/// in an async runtime.
struct Slot<T> {
    value: Option<T>,
    waker: Option<Waker>,
}

pub(crate) struct Sender<T>(Arc<Mutex<Slot<T>>>);
pub(crate) struct Receiver<T>(Arc<Mutex<Slot<T>>>);

pub(crate) fn oneshot<T>() -> (Sender<T>, Receiver<T>) {
    let slot = Arc::new(Mutex::new(Slot { value: None, waker: None }));
    (Sender(slot.clone()), Receiver(slot))
}

impl<T> Sender<T> {
    pub(crate) fn send(self, value: T) {
        if let Ok(mut s) = self.0.lock() {
            s.value = Some(value);
            if let Some(w) = s.waker.take() {
                w.wake();
            }
        }
    }
}

impl<T> Future for Receiver<T> {
    type Output = T;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut s = match self.0.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        match s.value.take() {
            Some(v) => Poll::Ready(v),
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}
