//! The GPU model as an [`engine::Backend`](crate::engine::Backend), and the one loading path
//! that native and web share: header → weight buffers → chunks through the streaming loader
//! → op graphs.

use super::model::GpuModel;
use super::{Gpu, GpuError, GpuWeights, Kernels};
use crate::engine::{Backend, EngineError};
use crate::gguf::GgufFile;
use crate::model::config::LlamaConfig;
use crate::model::loader::StreamRouter;
use crate::sampling::{Sampler, SamplingParams};

impl From<GpuError> for EngineError {
    fn from(e: GpuError) -> Self {
        EngineError::Backend(e.to_string())
    }
}

/// Load phases reported to progress callbacks.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LoadPhase {
    Reading,
    Uploading,
    Compiling,
}

/// Uploads a model's tensors as its bytes arrive: create it from the parsed header, `push`
/// every chunk of the file in order (the header's bytes too), then `finish`.
pub struct GpuLoader {
    kernels: Kernels,
    header: GgufFile,
    weights: GpuWeights,
    router: StreamRouter,
}

impl GpuLoader {
    pub async fn new(gpu: &Gpu, header: GgufFile) -> Result<Self, GpuError> {
        // Refuse a model the engine cannot run before allocating GPU memory for it.
        LlamaConfig::from_gguf(&header).map_err(|e| GpuError::Shape { op: "load", message: e.to_string() })?;
        let weights = GpuWeights::new(gpu, &header).await?;
        let router = StreamRouter::new(&header);
        Ok(Self { kernels: Kernels::new(gpu), header, weights, router })
    }

    /// Bytes of the file consumed so far; the next chunk starts here.
    pub fn position(&self) -> u64 {
        self.router.position()
    }

    pub fn push(&mut self, chunk: &[u8]) -> Result<(), GpuError> {
        self.router.push(chunk, &mut self.weights)
    }

    /// Wait for the uploads, then compile the pipelines and build the op graphs.
    pub async fn finish(mut self, context: u64) -> Result<GpuBackend, GpuError> {
        self.router.finish()?;
        self.weights.finish().await?;
        let model = GpuModel::new(self.kernels, &self.header, self.weights, context).await?;
        Ok(GpuBackend::new(model))
    }
}

pub struct GpuBackend {
    pub model: GpuModel,
    /// The sampling settings the GPU sampler holds, and whether its history is current.
    synced: Option<SamplingParams>,
}

impl GpuBackend {
    pub fn new(model: GpuModel) -> Self {
        Self { model, synced: None }
    }

    /// Load a model file natively: the file is read in chunks, never whole.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load_file(
        path: &std::path::Path,
        gpu: &Gpu,
        context: Option<u64>,
        mut on_progress: impl FnMut(LoadPhase, u64, u64),
    ) -> Result<Self, EngineError> {
        use crate::model::loader::{for_each_chunk, read_header, CHUNK_BYTES};
        let io = |e: std::io::Error| EngineError::Backend(format!("{}: {e}", path.display()));
        let mut f = std::fs::File::open(path).map_err(io)?;
        let len = f.metadata().map_err(io)?.len();
        on_progress(LoadPhase::Reading, 0, len);
        let (header, head) = read_header(&mut f, len).map_err(|e| EngineError::Backend(format!("{}: {e}", path.display())))?;
        let config = LlamaConfig::from_gguf(&header)?;
        let context = context.unwrap_or(config.context_length.min(4096) as u64);
        let mut loader = pollster::block_on(GpuLoader::new(gpu, header))?;
        loader.push(&head)?;
        drop(head);
        for_each_chunk(&mut f, loader.position(), len, CHUNK_BYTES, |bytes| {
            loader.push(bytes)?;
            on_progress(LoadPhase::Uploading, loader.position(), len);
            Ok::<_, GpuError>(())
        })?;
        on_progress(LoadPhase::Compiling, len, len);
        Ok(pollster::block_on(loader.finish(context))?)
    }
}

impl Backend for GpuBackend {
    fn config(&self) -> &LlamaConfig {
        &self.model.config
    }
    fn context_len(&self) -> usize {
        self.model.context_len() as usize
    }
    fn position(&self) -> usize {
        self.model.position() as usize
    }
    fn rewind(&mut self, len: usize) {
        self.model.rewind(len as u64);
    }
    async fn forward_last(&mut self, tokens: &[u32]) -> Result<Vec<f32>, EngineError> {
        self.check_input(tokens)?;
        Ok(self.model.forward_last(tokens).await?)
    }

    /// Sampling happens on the GPU; only the chosen id comes back. The GPU keeps its own ring
    /// of recent tokens (it pushes each token it samples); it is refilled from the CPU
    /// sampler's history when a new prompt starts or the settings change.
    async fn next_token(&mut self, tokens: &[u32], sampler: &mut Sampler) -> Result<u32, EngineError> {
        self.check_input(tokens)?;
        if tokens.len() > 1 || self.synced.as_ref() != Some(&sampler.params) {
            let history: Vec<u32> = sampler.recent().collect();
            self.model.set_sampling(&sampler.params, &history)?;
            self.synced = Some(sampler.params.clone());
        }
        Ok(self.model.next_token(tokens).await?)
    }
}
