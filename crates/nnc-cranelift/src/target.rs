//! What the backend knows about the machine it compiles for: the Cranelift ISA, the
//! host CPU's vector features and the width of a kernel family's vectors. A leaf: it
//! depends on nothing else in the crate but the error type.

use crate::error::{codegen_err, BackendError};
use cranelift_codegen::isa::OwnedTargetIsa;
use cranelift_codegen::settings::{self, Configurable};

/// Vector width of a kernel family's FMAs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VectorWidth {
    /// f32x4 (Cranelift's widest vectors).
    V128,
    /// 256-bit ymm (the AVX2 kernels).
    V256,
    /// 512-bit zmm (the AVX-512 kernels).
    V512,
}

impl VectorWidth {
    pub fn bits(self) -> u32 {
        match self {
            VectorWidth::V128 => 128,
            VectorWidth::V256 => 256,
            VectorWidth::V512 => 512,
        }
    }

    /// f32 lanes of one vector.
    pub fn lanes(self) -> usize {
        self.bits() as usize / 32
    }
}

/// How generated code addresses what it calls.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Relocation {
    /// Position-independent, for object files linked into PIE executables.
    Pic,
    /// Absolute calls: the JIT places code anywhere in the address space.
    Absolute,
}

/// The host's ISA and whether it has fused multiply-add.
pub(crate) fn isa(relocation: Relocation) -> Result<(OwnedTargetIsa, bool), BackendError> {
    let pic = relocation == Relocation::Pic;
    let mut flags = settings::builder();
    flags.set("opt_level", "speed").map_err(codegen_err)?;
    flags.set("use_colocated_libcalls", if pic { "true" } else { "false" }).map_err(codegen_err)?;
    flags.set("is_pic", if pic { "true" } else { "false" }).map_err(codegen_err)?;
    // Kernels keep blocks of up to a few hundred KiB on the stack: a frame larger
    // than a page touches every page as it grows, so a thread whose stack is too small
    // stops at its guard page instead of writing past it.
    flags.set("enable_probestack", "true").map_err(codegen_err)?;
    flags.set("probestack_strategy", "inline").map_err(codegen_err)?;
    let builder = cranelift_native::builder().map_err(codegen_err)?;
    let isa = builder.finish(settings::Flags::new(flags)).map_err(codegen_err)?;
    // Without FMA, Cranelift lowers vector fma to a slow libcall; use mul + add.
    #[cfg(target_arch = "x86_64")]
    let fma = std::is_x86_feature_detected!("fma");
    #[cfg(not(target_arch = "x86_64"))]
    let fma = cfg!(target_arch = "aarch64");
    Ok((isa, fma))
}

/// Whether this CPU runs the assembled 256-bit kernels (AVX2 and FMA; assembled for
/// the System V calling convention of Unix-like systems).
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx2_fma() -> bool {
    cfg!(unix) && std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
}

/// Whether this CPU runs the assembled 512-bit kernels (AVX-512F as well).
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx512f() -> bool {
    has_avx2_fma() && std::is_x86_feature_detected!("avx512f")
}
