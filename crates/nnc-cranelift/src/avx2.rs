//! 256-bit matrix-product micro-kernels assembled at compile time (x86-64 AVX2+FMA).
//!
//! Cranelift's vectors stop at 128 bits, which caps its kernels at half the FMA
//! throughput of an AVX2 core. This provider assembles, with iced-x86's code
//! assembler, one `6 × 16` register tile (or `6 × 32` with AVX-512's zmm registers) (12 ymm accumulators, two ymm of B and two
//! broadcast registers: the classic shape for 16 vector registers) and defines it as a
//! function of the same Cranelift module — JIT or object file — that the generated
//! loop nest calls for every whole tile. Everything else (tiles at the M or N edge,
//! other tile shapes) falls back to the Cranelift f32x4 code of `provider.rs`.
//!
//! Results are bitwise those of the Cranelift kernels: each element is the same chain
//! of single-rounding FMAs over k within a K block (`acc = b·a + acc` either way), and
//! accumulation into C is the same addition.
//!
//! ```text
//! tile(a, a_row, b, b_step, kb, a_step, c, ldc, accumulate)   ; SysV: 6 in registers, 3 on the stack
//! ```

use crate::clif::{Fx, PTR};
use crate::codegen::codegen_err;
use crate::error::BackendError;
use crate::provider::{ARows, CraneliftTiles, GemmShape, MicroKernelProvider, Step, TileArgs, TileShape};
use cranelift_codegen::ir::{types, AbiParam, InstBuilder, Signature};
use cranelift_module::{FuncId, Linkage, Module};
use iced_x86::code_asm::*;
use std::cell::Cell;

/// The tile the assembled AVX2 kernel computes: 6 rows × 16 columns (two ymm).
const TILE: TileShape = TileShape { mr: 6, nv: 4, kc: 256, unroll: 1, fused: true };
/// The AVX-512 kernel: 6 rows × 32 columns (two zmm).
const TILE_512: TileShape = TileShape { mr: 6, nv: 8, kc: 256, unroll: 1, fused: true };

pub(crate) struct Avx2Tiles {
    /// 512-bit vectors (AVX-512F) instead of 256-bit ones.
    wide: bool,
    /// For every tile this provider cannot assemble.
    fallback: CraneliftTiles,
    /// The assembled kernel in the current module (defined by `prepare`).
    kernel: Cell<Option<FuncId>>,
}

impl Avx2Tiles {
    pub fn new(wide: bool) -> Avx2Tiles {
        Avx2Tiles { wide, fallback: CraneliftTiles { fixed: None }, kernel: Cell::new(None) }
    }

    /// Whether this CPU can run the AVX2 kernels.
    pub fn supported() -> bool {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }

    /// Whether this CPU can run the AVX-512 kernels.
    pub fn supported_512() -> bool {
        Self::supported() && std::is_x86_feature_detected!("avx512f")
    }

    fn tile(&self) -> TileShape {
        if self.wide {
            TILE_512
        } else {
            TILE
        }
    }
}

fn asm_err(e: IcedError) -> BackendError {
    codegen_err(format!("assembling the AVX2 kernel: {e}"))
}

/// Machine code of a 6-row tile of two vectors per row: `$acc` are 12 accumulators
/// then two B registers and two broadcast registers, `$ptr` the memory-operand
/// constructor of that vector width, `$bytes` the bytes of one vector.
macro_rules! tile_kernel {
    ($name:ident, [$($reg:ident),*], $ptr:ident, $bytes:expr) => {
        fn $name() -> Result<Vec<u8>, IcedError> {
            let r = [$($reg),*];
            let (acc, b0, b1, x0, x1) = (&r[..12], r[12], r[13], r[14], r[15]);
            let mut a = CodeAssembler::new(64)?;
            // rdi = a, rsi = a_row (bytes), rdx = b, rcx = b_step, r8 = kb, r9 = a_step;
            // [rsp+8] = c, [rsp+16] = ldc, [rsp+24] = accumulate.
            for &v in acc {
                a.vxorps(v, v, v)?;
            }
            a.lea(r11, qword_ptr(rsi + rsi * 2))?;
            a.add(r11, rdi)?;
            let mut store = a.create_label();
            let mut k_loop = a.create_label();
            a.test(r8, r8)?;
            a.jz(store)?;
            a.set_label(&mut k_loop)?;
            a.vmovups(b0, $ptr(rdx))?;
            a.vmovups(b1, $ptr(rdx + $bytes))?;
            let rows = [
                dword_ptr(rdi),
                dword_ptr(rdi + rsi),
                dword_ptr(rdi + rsi * 2),
                dword_ptr(r11),
                dword_ptr(r11 + rsi),
                dword_ptr(r11 + rsi * 2),
            ];
            for (i, row) in rows.into_iter().enumerate() {
                let x = if i % 2 == 0 { x0 } else { x1 };
                a.vbroadcastss(x, row)?;
                a.vfmadd231ps(acc[2 * i], b0, x)?;
                a.vfmadd231ps(acc[2 * i + 1], b1, x)?;
            }
            a.add(rdi, r9)?;
            a.add(r11, r9)?;
            a.add(rdx, rcx)?;
            a.dec(r8)?;
            a.jnz(k_loop)?;

            a.set_label(&mut store)?;
            a.mov(rax, qword_ptr(rsp + 8))?;
            a.mov(r10, qword_ptr(rsp + 16))?;
            a.mov(rsi, qword_ptr(rsp + 24))?;
            let mut overwrite = a.create_label();
            let mut done = a.create_label();
            a.test(rsi, rsi)?;
            a.jz(overwrite)?;
            for i in 0..6 {
                a.vaddps(acc[2 * i], acc[2 * i], $ptr(rax))?;
                a.vaddps(acc[2 * i + 1], acc[2 * i + 1], $ptr(rax + $bytes))?;
                a.vmovups($ptr(rax), acc[2 * i])?;
                a.vmovups($ptr(rax + $bytes), acc[2 * i + 1])?;
                a.add(rax, r10)?;
            }
            a.jmp(done)?;
            a.set_label(&mut overwrite)?;
            for i in 0..6 {
                a.vmovups($ptr(rax), acc[2 * i])?;
                a.vmovups($ptr(rax + $bytes), acc[2 * i + 1])?;
                a.add(rax, r10)?;
            }
            a.set_label(&mut done)?;
            a.vzeroupper()?;
            a.ret()?;
            // Only relative branches: the code runs at any address.
            a.assemble(0)
        }
    };
}

tile_kernel!(
    assemble_avx2,
    [ymm0, ymm1, ymm2, ymm3, ymm4, ymm5, ymm6, ymm7, ymm8, ymm9, ymm10, ymm11, ymm12, ymm13, ymm14, ymm15],
    ymmword_ptr,
    32
);
tile_kernel!(
    assemble_avx512,
    [zmm0, zmm1, zmm2, zmm3, zmm4, zmm5, zmm6, zmm7, zmm8, zmm9, zmm10, zmm11, zmm12, zmm13, zmm14, zmm15],
    zmmword_ptr,
    64
);

impl MicroKernelProvider for Avx2Tiles {
    fn family(&self) -> &'static str {
        if self.wide {
            "avx512-asm"
        } else {
            "avx2-asm"
        }
    }

    fn prepare(&self, module: &mut dyn Module) -> Result<(), BackendError> {
        let mut sig = Signature::new(module.isa().default_call_conv());
        sig.params.extend(std::iter::repeat_n(AbiParam::new(PTR), 9));
        let name = if self.wide { "nnc_avx512_tile_6x32" } else { "nnc_avx2_tile_6x16" };
        let id = module.declare_function(name, Linkage::Local, &sig).map_err(codegen_err)?;
        let code = if self.wide { assemble_avx512() } else { assemble_avx2() }.map_err(asm_err)?;
        module.define_function_bytes(id, 16, &code, &[]).map_err(codegen_err)?;
        self.kernel.set(Some(id));
        Ok(())
    }

    fn tile_shape(&self, shape: &GemmShape) -> TileShape {
        // Products at most half a tile wide would be mostly padding.
        let tile = self.tile();
        match shape.n {
            Some(n) if n <= tile.nr() as u64 / 2 => self.fallback.tile_shape(shape),
            _ => tile,
        }
    }

    fn emit_tile(&self, fx: &mut Fx, tile: TileShape, args: &TileArgs) {
        let (ARows::Uniform { base, stride }, Some(kernel)) = (&args.a, self.kernel.get()) else {
            return self.fallback.emit_tile(fx, tile, args);
        };
        if tile != self.tile() || args.cols != tile.nr() {
            return self.fallback.emit_tile(fx, tile, args);
        }
        let value = |fx: &mut Fx, s: Step| match s {
            Step::Static(k) => fx.iconst(k),
            Step::Dynamic(v) => v,
        };
        let a_row = fx.iconst(*stride);
        let b_step = value(fx, args.b_step);
        let a_step = value(fx, args.a_step);
        let accumulate = fx.b.ins().uextend(types::I64, args.accumulate);
        fx.call(kernel, &[*base, a_row, args.b_panel, b_step, args.kb, a_step, args.c, args.ldc, accumulate]);
    }
}
