//! 256-bit matrix-product micro-kernels assembled at compile time (x86-64 AVX2+FMA,
//! and 512-bit ones with AVX-512F).
//!
//! Cranelift's vectors stop at 128 bits, which caps its kernels at half the FMA
//! throughput of an AVX2 core. This family assembles register tiles with iced-x86's
//! code assembler and defines each as a function of the same Cranelift module — JIT or
//! object file — that the generated loop nest calls. A tile is up to 6 rows × 2 ymm
//! (6 × 16 f32: 12 accumulators, two B registers and two broadcast registers, the
//! classic shape for AVX2's 16 vector registers) or 6 rows × 4 zmm (6 × 64 f32: 24
//! accumulators of AVX-512's 32 registers).
//!
//! Every tile the loop nest needs is assembled on demand for its exact shape
//! (`X86Tiles::variants` says which it has): fewer rows at the M edge (the loop nest
//! picks the variant at run time from the rows left), one vector for narrow products,
//! and a masked last vector at the N edge (`vmaskmovps` with AVX2, a `k1` write mask
//! with AVX-512), so no tile goes through a stack buffer or falls back to the portable
//! tiles when A's rows are a static stride apart (always, once A is packed). One-row
//! tiles with as many vectors as the accumulators (several panels of a row-major B read
//! in place) take the last one or two rows, where a 1- or 2-row tile per panel would
//! wait on its few FMA chains.
//!
//! The tiles also copy operands as they read them, so no pass of its own has to (A in
//! both widths; B only in the AVX2 tiles). A tile reading A in place can copy the values
//! it broadcasts to the packed layout (`TileArgs::copy_a`): the first panel's tiles pack
//! a transposed A for the other panels while the FMAs run. A tile reading a row-major B
//! in place can store the B vectors it loads to a contiguous panel on the stack
//! (`TileArgs::copy_b`), which the panel's other row tiles read from L1 instead of
//! striding through 1 KiB rows that share a few L1 sets. A tile may do both (then
//! `rbx`, saved, holds the B copy's address). The measurements behind these choices
//! are in docs/matmul.md.
//!
//! Two helpers are assembled the same way: the dot products of `kernels/matmul/dots.rs`
//! (one or two rows of A times up to four stored rows of a transposed B, 8 lanes per
//! ymm), and the pack of a transposed B into panels (4 × 4 in-lane transposes instead
//! of a scalar copy per float).
//!
//! Results are bitwise those of the portable tiles: each element is the same chain
//! of single-rounding FMAs over k within a K block (`acc = b·a + acc` either way), and
//! accumulation into C is the same addition.
//!
//! ```text
//! tile(a, a_row, b, b_step, kb, a_step, c, ldc, accumulate,   ; SysV: 6 in registers,
//!      [epilogue..., last], [copy_a], [copy_b])                ; the rest on the stack
//! ```

mod dots;
mod pack;
mod tile;

use crate::clif::{Fx, PTR};
use crate::error::{codegen_err, BackendError};
use crate::microkernel::{
    ARead, ARows, GemmShape, KernelFamily, MicroArgs, MicroKernels, MicroOp, Step, TileArgs, TileEpilogue, TileRows,
    TileSpec,
};
use crate::program::{EpilogueOp, TileShape};
use crate::target::VectorWidth;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, AbiParam, InstBuilder, Signature, Value};
use cranelift_module::{FuncId, Linkage, Module};
use dots::assemble_dots;
use iced_x86::IcedError;
use nnc_ir::{UnaryOp, UpdateRule};
use pack::assemble_pack_transposed;
use std::cell::RefCell;
use std::collections::HashMap;

/// Rows of every assembled tile.
const MR: usize = 6;
/// Depth of one K block, the same for every family: the blocks decide where partial
/// sums are rounded into C, so the bits depend on it (a 256 × 16 f32 panel is 16 KiB).
const KC: usize = 256;
/// The widest one-row tile has as many accumulators as the 6-row tiles.
const ROW_TILE_VECS_PER_TILE_VEC: usize = MR;

/// One assembled tile: `rows × ((vecs - 1)·L + lanes)` for vectors of `L` lanes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Variant {
    rows: usize,
    vecs: usize,
    /// Lanes of C written from the last vector (`1..=L`).
    lanes: usize,
    /// The epilogue it applies on the last K block (taking more arguments).
    ep: Ep,
    /// Also writes the A values it broadcasts, packed, to the address in an argument
    /// after the epilogue's (see `TileArgs::copy_a`).
    copy_a: bool,
    /// Also writes the B vectors it loads, one panel row per k, to the address in its
    /// last argument (see `TileArgs::copy_b`).
    copy_b: bool,
}

/// The epilogues the tiles apply (see `TileEpilogue`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Ep {
    None,
    /// Plain SGD: `p - g·lr`.
    Sgd,
    /// `relu?(C + bias)`.
    Bias {
        relu: bool,
    },
    /// `relu(C)`.
    Relu,
    /// The ReLU gradient mask.
    Mask,
}

impl Ep {
    /// The tiles' epilogue for these operations, if they have one.
    fn of(ops: &[EpilogueOp]) -> Option<Ep> {
        let relu = |u: &UnaryOp| *u == UnaryOp::Relu;
        Some(match ops {
            [] => Ep::None,
            [EpilogueOp::Bias(_)] => Ep::Bias { relu: false },
            [EpilogueOp::Bias(_), EpilogueOp::Activation(u)] if relu(u) => Ep::Bias { relu: true },
            [EpilogueOp::Activation(u)] if relu(u) => Ep::Relu,
            [EpilogueOp::ReluMask(_)] => Ep::Mask,
            [EpilogueOp::Update(u)] if matches!(u.rule, UpdateRule::Sgd { weight_decay } if weight_decay == 0.0) => {
                Ep::Sgd
            }
            _ => return None,
        })
    }

    fn bias(self) -> bool {
        matches!(self, Ep::Bias { .. })
    }

    fn relu(self) -> bool {
        matches!(self, Ep::Bias { relu: true } | Ep::Relu)
    }

    /// Arguments after the nine of every tile: the epilogue's, then `last`.
    fn extra_args(self) -> usize {
        match self {
            Ep::None => 0,
            Ep::Sgd => 4,
            Ep::Bias { .. } | Ep::Mask => 2,
            Ep::Relu => 1,
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Ep::None => "",
            Ep::Sgd => "_sgd",
            Ep::Bias { relu: true } => "_bias_relu",
            Ep::Bias { relu: false } => "_bias",
            Ep::Relu => "_relu",
            Ep::Mask => "_relu_mask",
        }
    }
}

/// An assembled function: a tile variant, or a helper of the dot products
/// (`kernels/matmul/dots.rs`) or of the pack of a transposed B.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kernel {
    Tile(Variant),
    Dots { k: usize, cols: usize, rows: usize },
    PackTransposed { nr: usize },
}

pub(crate) struct X86Tiles {
    /// 256-bit (AVX2) or 512-bit (AVX-512F) vectors.
    width: VectorWidth,
    /// The functions defined in the current module (`prepare` starts a new one).
    kernels: RefCell<HashMap<Kernel, FuncId>>,
    /// Name and code size of every variant defined, for profilers and `--emit asm`.
    defined: RefCell<Vec<(FuncId, String, usize)>>,
    /// The first error met while defining a function (`emit` cannot return it).
    error: RefCell<Option<BackendError>>,
}

impl X86Tiles {
    /// The kernels of `width`, 256 or 512 bits (the caller checks that the CPU runs
    /// them: `target::has_avx2_fma`, `target::has_avx512f`).
    pub fn new(width: VectorWidth) -> X86Tiles {
        debug_assert!(matches!(width, VectorWidth::V256 | VectorWidth::V512));
        X86Tiles { width, kernels: RefCell::default(), defined: RefCell::default(), error: RefCell::default() }
    }

    /// f32 lanes of one vector register.
    fn lanes(&self) -> usize {
        self.width.lanes()
    }

    /// Vectors per row of the widest tile: 6 × 2 ymm (16 registers), 6 × 4 zmm (32).
    fn max_vecs(&self) -> usize {
        match self.width {
            VectorWidth::V512 => 4,
            _ => 2,
        }
    }

    /// The family's name in the names of its assembled functions.
    fn family_prefix(&self) -> &'static str {
        match self.width {
            VectorWidth::V512 => "avx512",
            _ => "avx2",
        }
    }

    /// The tile shape of `vecs` vectors per row (`TileShape::nv` counts f32x4).
    fn shape(&self, vecs: usize) -> TileShape {
        TileShape { mr: MR, nv: vecs * self.lanes() / 4, kc: KC, unroll: 1, fused: true }
    }

    /// The variant computing `rows × cols` of a tile of shape `tile`, if assembled.
    fn variant(&self, tile: TileShape, rows: usize, cols: usize, ep: Ep) -> Option<Variant> {
        let l = self.lanes();
        let vecs = tile.nr() / l;
        let fits = tile.mr == MR && tile.nr().is_multiple_of(l) && (1..=self.max_vecs()).contains(&vecs);
        let used = cols.div_ceil(l);
        let lanes = cols.saturating_sub(used.saturating_sub(1) * l);
        (fits && (1..=MR).contains(&rows) && (1..=tile.nr()).contains(&cols)).then_some(Variant {
            rows,
            vecs: used,
            lanes,
            ep,
            copy_a: false,
            copy_b: false,
        })
    }

    /// The variants that run `spec` (one, or one per row count of an edge), if the
    /// family has them. A read in place or packed, never through an address per row;
    /// B copied only by a tile as wide as its panel, and not by the AVX-512 tiles,
    /// whose panels are 64 floats wide (a 64 KiB K block, more than an L1) and which
    /// prefetch a B read in place: copying it measured no faster there.
    fn variants(&self, spec: &TileSpec) -> Option<Vec<Variant>> {
        let ep = Ep::of(spec.epilogue)?;
        let copies_b = self.width != VectorWidth::V512 && spec.cols == spec.shape.nr();
        if spec.a == ARead::PerRow || (spec.copy_b && !copies_b) {
            return None;
        }
        let (copy_a, copy_b) = (spec.copy_a, spec.copy_b);
        match spec.rows {
            TileRows::All => Some(vec![Variant { copy_a, copy_b, ..self.variant(spec.shape, MR, spec.cols, ep)? }]),
            TileRows::Edge if !copy_a && !copy_b => {
                (1..spec.shape.mr).map(|r| self.variant(spec.shape, r, spec.cols, ep)).collect()
            }
            TileRows::One if !copy_a && !copy_b => {
                let l = self.lanes();
                let vecs = spec.cols / l;
                let fits =
                    spec.cols.is_multiple_of(l) && (1..=ROW_TILE_VECS_PER_TILE_VEC * self.max_vecs()).contains(&vecs);
                fits.then_some(vec![Variant { rows: 1, vecs, lanes: l, ep, copy_a, copy_b }])
            }
            TileRows::Edge | TileRows::One => None,
        }
    }

    /// The function of `kernel` in the current module, assembled and defined on first
    /// use.
    fn kernel(&self, fx: &mut Fx, kernel: Kernel) -> Option<FuncId> {
        if let Some(&id) = self.kernels.borrow().get(&kernel) {
            return Some(id);
        }
        let (name, params) = match kernel {
            Kernel::Tile(v) => {
                let (family, cols) = (self.family_prefix(), (v.vecs - 1) * self.lanes() + v.lanes);
                let copy = match (v.copy_a, v.copy_b) {
                    (true, true) => "_copy_ab",
                    (true, false) => "_copy_a",
                    (false, true) => "_copy_b",
                    (false, false) => "",
                };
                let name = format!("nnc_{family}_tile_{}x{cols}{}{copy}", v.rows, v.ep.suffix());
                (name, 9 + v.ep.extra_args() + v.copy_a as usize + v.copy_b as usize)
            }
            Kernel::Dots { k, cols, rows } => (format!("nnc_avx2_dots_{rows}x{cols}x{k}"), 6),
            Kernel::PackTransposed { nr } => (format!("nnc_avx2_pack_transposed_16_of_{nr}"), 4),
        };
        let module = fx.module();
        let mut sig = Signature::new(module.isa().default_call_conv());
        sig.params.extend(std::iter::repeat_n(AbiParam::new(PTR), params));
        let defined = (|| {
            let id = module.declare_function(&name, Linkage::Local, &sig).map_err(codegen_err)?;
            let code = match kernel {
                Kernel::Tile(v) if self.width == VectorWidth::V512 => tile::avx512::assemble(v),
                Kernel::Tile(v) => tile::avx2::assemble(v),
                Kernel::Dots { k, cols, rows } => assemble_dots(k, cols, rows),
                Kernel::PackTransposed { nr } => assemble_pack_transposed(nr),
            }
            .map_err(asm_err)?;
            module.define_function_bytes(id, 16, &code, &[]).map_err(codegen_err)?;
            Ok::<_, BackendError>((id, code.len()))
        })();
        match defined {
            Ok((id, size)) => {
                self.kernels.borrow_mut().insert(kernel, id);
                self.defined.borrow_mut().push((id, name, size));
                Some(id)
            }
            Err(e) => {
                self.error.borrow_mut().get_or_insert(e);
                None
            }
        }
    }

    /// Calls variant `v` on the tile of `args`, whose A rows are a static stride apart.
    fn call(&self, fx: &mut Fx, v: Variant, args: &TileArgs) {
        let ARows::Uniform { base, stride } = args.a else {
            return self.internal("a tile reads A through an address per row");
        };
        let Some(kernel) = self.kernel(fx, Kernel::Tile(v)) else { return };
        let value = |fx: &mut Fx, s: Step| match s {
            Step::Static(k) => fx.iconst(k),
            Step::Dynamic(v) => v,
        };
        let a_row = fx.iconst(stride);
        let b_step = value(fx, args.b_step);
        let a_step = value(fx, args.a_step);
        let accumulate = fx.b.ins().uextend(types::I64, args.accumulate);
        let mut call = vec![base, a_row, args.b_panel, b_step, args.kb, a_step, args.c, args.ldc, accumulate];
        if let Some(f) = &args.finish {
            match f.epilogue {
                TileEpilogue::Sgd { p, p_out, lr } => call.extend([p, p_out, lr]),
                TileEpilogue::Dense { bias } => call.extend(bias),
                TileEpilogue::ReluMask { h } => call.push(h),
            }
            call.push(f.last);
        }
        call.extend(args.copy_a);
        call.extend(args.copy_b);
        fx.call(kernel, &call);
    }

    /// A tile: one variant, or at an edge the variant of the run-time row count.
    fn emit_tile(&self, fx: &mut Fx, variants: &[Variant], args: &TileArgs) {
        let (Some(rows), [.., last]) = (args.rows, variants) else {
            return match variants {
                [v] => self.call(fx, *v, args),
                _ => self.internal("an edge tile without its row count"),
            };
        };
        // Define every variant first: a failure leaves nothing half-emitted. A chain
        // of compares, not a jump table: it runs once per panel, and keeps the code
        // free of inline data.
        if variants.iter().any(|&v| self.kernel(fx, Kernel::Tile(v)).is_none()) {
            return;
        }
        let after = fx.b.create_block();
        for &v in &variants[..variants.len() - 1] {
            let (this, next) = (fx.b.create_block(), fx.b.create_block());
            let is = fx.b.ins().icmp_imm_s(IntCC::Equal, rows, v.rows as i64);
            fx.b.ins().brif(is, this, &[], next, &[]);
            fx.b.switch_to_block(this);
            self.call(fx, v, args);
            fx.b.ins().jump(after, &[]);
            fx.b.switch_to_block(next);
        }
        self.call(fx, *last, args);
        fx.b.ins().jump(after, &[]);
        fx.b.switch_to_block(after);
    }

    fn emit_pack_transposed(&self, fx: &mut Fx, nr: usize, [src, row, dst, k]: [Value; 4]) {
        let Some(id) = self.kernel(fx, Kernel::PackTransposed { nr }) else { return };
        for group in 0..nr / 16 {
            let off = fx.mul_imm(row, 16 * group as i64);
            let src = fx.add(src, off);
            let dst = fx.b.ins().iadd_imm_s(dst, 64 * group as i64);
            fx.call(id, &[src, row, dst, k]);
        }
    }

    /// Records an internal error: the loop nest asked for what `supports` refused.
    fn internal(&self, what: &str) {
        let e = codegen_err(format!("internal: {what}"));
        self.error.borrow_mut().get_or_insert(e);
    }
}

fn asm_err(e: IcedError) -> BackendError {
    codegen_err(format!("assembling a matrix-product tile: {e}"))
}

impl KernelFamily for X86Tiles {
    fn family(&self) -> &'static str {
        match self.width {
            VectorWidth::V512 => "avx512-asm",
            _ => "avx2-asm",
        }
    }

    fn vector_width(&self) -> VectorWidth {
        self.width
    }

    fn tile_shape(&self, shape: &GemmShape) -> TileShape {
        // One vector per row when the whole product is that narrow: the panel is
        // then no wider than the output.
        match shape.n {
            Some(n) if n as usize <= self.lanes() => self.shape(1),
            _ => self.shape(self.max_vecs()),
        }
    }

    fn micro_kernels(&self) -> Option<&dyn MicroKernels> {
        Some(self)
    }
}

impl MicroKernels for X86Tiles {
    fn prepare(&self, _module: &mut dyn Module) -> Result<(), BackendError> {
        self.kernels.borrow_mut().clear();
        self.defined.borrow_mut().clear();
        Ok(())
    }

    fn finish(&self) -> Result<Vec<(FuncId, String, usize)>, BackendError> {
        match self.error.borrow_mut().take() {
            Some(e) => Err(e),
            None => Ok(self.defined.borrow().clone()),
        }
    }

    fn supports(&self, op: &MicroOp) -> bool {
        match op {
            MicroOp::Tile(spec) => self.variants(spec).is_some(),
            // The loop compares K's byte offset with a 32-bit immediate.
            MicroOp::Dots { k, cols, rows } => {
                let fits = k.checked_mul(4).is_some_and(|bytes| bytes <= i32::MAX as usize);
                *k >= 8 && fits && (1..=4).contains(cols) && (1..=2).contains(rows)
            }
            MicroOp::PackTransposed { nr } => nr.is_multiple_of(16),
        }
    }

    fn emit(&self, fx: &mut Fx, op: &MicroOp, args: &MicroArgs) {
        match (op, args) {
            (MicroOp::Tile(spec), MicroArgs::Tile(args)) => match self.variants(spec) {
                Some(variants) => self.emit_tile(fx, &variants, args),
                None => self.internal("a tile the assembled kernels do not have"),
            },
            (&MicroOp::Dots { k, cols, rows }, MicroArgs::Dots(args)) => {
                if let Some(id) = self.kernel(fx, Kernel::Dots { k, cols, rows }) {
                    fx.call(id, args);
                }
            }
            (&MicroOp::PackTransposed { nr }, &MicroArgs::PackTransposed(args)) => {
                self.emit_pack_transposed(fx, nr, args)
            }
            _ => self.internal("a micro-kernel called with another's arguments"),
        }
    }
}
