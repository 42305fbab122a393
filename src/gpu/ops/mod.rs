//! Op constructors, one file per kernel family. Each checks shapes against the buffers it is
//! given, creates (or reuses) its pipeline, builds its bind groups and fixed-shape uniform
//! once, and returns an [`Op`](super::Op) to record per token.
//!
//! Buffers may be larger than an op needs (scratch buffers are shared between ops of
//! different widths), never smaller. Where a kernel reads the position, it reads it from the
//! [`StepUniform`](super::StepUniform), so the same ops serve every token.

pub mod attention;
pub mod basic;
pub mod matvec;
pub mod sample;

use super::{ensure, GpuBuffer, GpuError};

/// `buf` must hold at least `need` elements.
pub(crate) fn check_len(op: &'static str, what: &str, buf: &GpuBuffer, need: u64) -> Result<(), GpuError> {
    ensure(buf.len >= need, op, || format!("{what} buffer {:?} has {} elements, needs {need}", buf.label, buf.len))
}

/// `v` as u32 for a shader parameter, or a shape error.
pub(crate) fn u32_of(op: &'static str, what: &str, v: u64) -> Result<u32, GpuError> {
    u32::try_from(v).map_err(|_| GpuError::Shape { op, message: format!("{what} = {v} exceeds u32") })
}
