//! The machine's fused-multiply-add peak, measured: what `nnc bench` reports its
//! GFLOP/s against.
//!
//! The peak of a core is not portably knowable (clock boost, FMA units per core,
//! whether 512-bit FMAs run at full rate), so it is measured: a loop of independent
//! fused multiply-adds on vectors of the kernel family's width (12 accumulators, more
//! than the FMA latency × throughput of current cores), assembled and run for a few
//! milliseconds on the calling thread; the best of several runs is reported.

use crate::error::BackendError;
use crate::target::VectorWidth;

/// One core's measured f32 FMA peak at this width, in GFLOP/s (an FMA is two FLOPs).
/// `Ok(None)` on CPUs this cannot measure (not x86-64, or without the width's FMA).
pub fn fma_peak_gflops(width: VectorWidth) -> Result<Option<f64>, BackendError> {
    #[cfg(target_arch = "x86_64")]
    return x86::measure(width);
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = width;
        Ok(None)
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use crate::error::{codegen_err, BackendError};
    use crate::target::VectorWidth;
    use cranelift_codegen::ir::{types, AbiParam, Signature};
    use cranelift_jit::{JITBuilder, JITModule};
    use cranelift_module::{default_libcall_names, Linkage, Module};
    use iced_x86::code_asm::*;
    use std::time::Instant;

    /// Independent accumulator chains per loop iteration.
    const CHAINS: usize = 12;
    /// Loop iterations per timed run: 12 M FMAs, a few ms on current cores.
    const ITERATIONS: u64 = 1_000_000;
    const RUNS: usize = 5;

    macro_rules! fma_loop {
        ($name:ident, [$($reg:ident),*]) => {
            /// `fn(iterations)`: `CHAINS` FMAs per iteration, on registers only.
            fn $name() -> Result<Vec<u8>, IcedError> {
                let r = [$($reg),*];
                let mut a = CodeAssembler::new(64)?;
                // The 128-bit `vxorps` zeroes the whole register at every width (on zmm
                // it would need AVX-512DQ).
                for x in XMM {
                    a.vxorps(x, x, x)?;
                }
                let mut top = a.create_label();
                a.set_label(&mut top)?;
                for &acc in &r[..CHAINS] {
                    a.vfmadd231ps(acc, r[CHAINS], r[CHAINS + 1])?;
                }
                a.dec(rdi)?;
                a.jnz(top)?;
                a.vzeroupper()?;
                a.ret()?;
                a.assemble(0)
            }
        };
    }
    const XMM: [AsmRegisterXmm; CHAINS + 2] =
        [xmm0, xmm1, xmm2, xmm3, xmm4, xmm5, xmm6, xmm7, xmm8, xmm9, xmm10, xmm11, xmm12, xmm13];
    fma_loop!(loop_128, [xmm0, xmm1, xmm2, xmm3, xmm4, xmm5, xmm6, xmm7, xmm8, xmm9, xmm10, xmm11, xmm12, xmm13]);
    fma_loop!(loop_256, [ymm0, ymm1, ymm2, ymm3, ymm4, ymm5, ymm6, ymm7, ymm8, ymm9, ymm10, ymm11, ymm12, ymm13]);
    fma_loop!(loop_512, [zmm0, zmm1, zmm2, zmm3, zmm4, zmm5, zmm6, zmm7, zmm8, zmm9, zmm10, zmm11, zmm12, zmm13]);

    pub(super) fn measure(width: VectorWidth) -> Result<Option<f64>, BackendError> {
        // The loop takes its count in rdi: the System V calling convention.
        let fma = cfg!(unix) && std::is_x86_feature_detected!("fma");
        let supported = match width {
            VectorWidth::V128 | VectorWidth::V256 => fma && std::is_x86_feature_detected!("avx"),
            VectorWidth::V512 => fma && std::is_x86_feature_detected!("avx512f"),
        };
        if !supported {
            return Ok(None);
        }
        let code = match width {
            VectorWidth::V128 => loop_128(),
            VectorWidth::V256 => loop_256(),
            VectorWidth::V512 => loop_512(),
        }
        .map_err(|e| codegen_err(format!("assembling the FMA peak loop: {e}")))?;
        let (isa, _) = crate::target::isa(crate::target::Relocation::Absolute)?;
        let mut module = JITModule::new(JITBuilder::with_isa(isa, default_libcall_names()));
        let mut sig = Signature::new(module.isa().default_call_conv());
        sig.params.push(AbiParam::new(types::I64));
        let id = module.declare_function("nnc_fma_peak", Linkage::Local, &sig).map_err(codegen_err)?;
        module.define_function_bytes(id, 16, &code, &[]).map_err(codegen_err)?;
        module.finalize_definitions().map_err(codegen_err)?;
        // SAFETY: the function was just defined from `code`, which takes one integer
        // argument (rdi, the SysV convention of `extern "C"` on x86-64), touches only
        // vector registers, rdi and flags, and returns; the module outlives the calls.
        let run = unsafe { std::mem::transmute::<*const u8, extern "C" fn(u64)>(module.get_finalized_function(id)) };
        run(ITERATIONS / 10); // warm-up: wake the vector units and the clock
        let best = (0..RUNS)
            .map(|_| {
                let start = Instant::now();
                run(ITERATIONS);
                start.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min);
        // SAFETY: no pointer to the module's code is used after this.
        unsafe { module.free_memory() };
        let lanes = width.bits() as f64 / 32.0;
        Ok(Some(ITERATIONS as f64 * CHAINS as f64 * lanes * 2.0 / best / 1e9))
    }
}
