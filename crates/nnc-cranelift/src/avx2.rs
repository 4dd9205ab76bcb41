//! 256-bit matrix-product micro-kernels assembled at compile time (x86-64 AVX2+FMA).
//!
//! Cranelift's vectors stop at 128 bits, which caps its kernels at half the FMA
//! throughput of an AVX2 core. This provider assembles, with iced-x86's code
//! assembler, one `6 × 16` register tile (12 ymm accumulators, two ymm of B and two
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

/// The tile the assembled kernel computes.
const TILE: TileShape = TileShape { mr: 6, nv: 4, kc: 256, unroll: 1, fused: true };

pub(crate) struct Avx2Tiles {
    /// For every tile this provider cannot assemble.
    fallback: CraneliftTiles,
    /// The assembled kernel in the current module (defined by `prepare`).
    kernel: Cell<Option<FuncId>>,
}

impl Avx2Tiles {
    pub fn new() -> Avx2Tiles {
        Avx2Tiles { fallback: CraneliftTiles { fixed: None }, kernel: Cell::new(None) }
    }

    /// Whether this CPU can run the kernels.
    pub fn supported() -> bool {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
}

fn asm_err(e: IcedError) -> BackendError {
    codegen_err(format!("assembling the AVX2 kernel: {e}"))
}

/// Machine code of the 6 × 16 tile.
fn assemble() -> Result<Vec<u8>, IcedError> {
    let acc = [ymm0, ymm1, ymm2, ymm3, ymm4, ymm5, ymm6, ymm7, ymm8, ymm9, ymm10, ymm11];
    let mut a = CodeAssembler::new(64)?;
    // rdi = a, rsi = a_row (bytes), rdx = b, rcx = b_step, r8 = kb, r9 = a_step;
    // [rsp+8] = c, [rsp+16] = ldc, [rsp+24] = accumulate.
    for &r in &acc {
        a.vxorps(r, r, r)?;
    }
    a.lea(r11, qword_ptr(rsi + rsi * 2))?;
    a.add(r11, rdi)?;
    let mut store = a.create_label();
    let mut k_loop = a.create_label();
    a.test(r8, r8)?;
    a.jz(store)?;
    a.set_label(&mut k_loop)?;
    a.vmovups(ymm12, ymmword_ptr(rdx))?;
    a.vmovups(ymm13, ymmword_ptr(rdx + 32))?;
    let rows = [
        dword_ptr(rdi),
        dword_ptr(rdi + rsi),
        dword_ptr(rdi + rsi * 2),
        dword_ptr(r11),
        dword_ptr(r11 + rsi),
        dword_ptr(r11 + rsi * 2),
    ];
    for (r, row) in rows.into_iter().enumerate() {
        let x = if r % 2 == 0 { ymm14 } else { ymm15 };
        a.vbroadcastss(x, row)?;
        a.vfmadd231ps(acc[2 * r], ymm12, x)?;
        a.vfmadd231ps(acc[2 * r + 1], ymm13, x)?;
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
    for r in 0..6 {
        a.vaddps(acc[2 * r], acc[2 * r], ymmword_ptr(rax))?;
        a.vaddps(acc[2 * r + 1], acc[2 * r + 1], ymmword_ptr(rax + 32))?;
        a.vmovups(ymmword_ptr(rax), acc[2 * r])?;
        a.vmovups(ymmword_ptr(rax + 32), acc[2 * r + 1])?;
        a.add(rax, r10)?;
    }
    a.jmp(done)?;
    a.set_label(&mut overwrite)?;
    for r in 0..6 {
        a.vmovups(ymmword_ptr(rax), acc[2 * r])?;
        a.vmovups(ymmword_ptr(rax + 32), acc[2 * r + 1])?;
        a.add(rax, r10)?;
    }
    a.set_label(&mut done)?;
    a.vzeroupper()?;
    a.ret()?;
    // Only relative branches: the code runs at any address.
    a.assemble(0)
}

impl MicroKernelProvider for Avx2Tiles {
    fn family(&self) -> &'static str {
        "avx2-asm"
    }

    fn prepare(&self, module: &mut dyn Module) -> Result<(), BackendError> {
        let mut sig = Signature::new(module.isa().default_call_conv());
        sig.params.extend(std::iter::repeat_n(AbiParam::new(PTR), 9));
        let id = module.declare_function("nnc_avx2_tile_6x16", Linkage::Local, &sig).map_err(codegen_err)?;
        let code = assemble().map_err(asm_err)?;
        module.define_function_bytes(id, 16, &code, &[]).map_err(codegen_err)?;
        self.kernel.set(Some(id));
        Ok(())
    }

    fn tile_shape(&self, shape: &GemmShape) -> TileShape {
        // Products at most 8 columns wide would be mostly padding in a 16-wide tile.
        match shape.n {
            Some(n) if n <= 8 => self.fallback.tile_shape(shape),
            _ => TILE,
        }
    }

    fn emit_tile(&self, fx: &mut Fx, tile: TileShape, args: &TileArgs) {
        let (ARows::Uniform { base, stride }, Some(kernel)) = (&args.a, self.kernel.get()) else {
            return self.fallback.emit_tile(fx, tile, args);
        };
        if tile != TILE || args.cols != tile.nr() {
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
