//! 256-bit matrix-product micro-kernels assembled at compile time (x86-64 AVX2+FMA,
//! and 512-bit ones with AVX-512F).
//!
//! Cranelift's vectors stop at 128 bits, which caps its kernels at half the FMA
//! throughput of an AVX2 core. This provider assembles register tiles with iced-x86's
//! code assembler and defines each as a function of the same Cranelift module — JIT or
//! object file — that the generated loop nest calls. A tile is up to 6 rows × 2 ymm
//! (6 × 16 f32: 12 accumulators, two B registers and two broadcast registers, the
//! classic shape for AVX2's 16 vector registers) or 6 rows × 4 zmm (6 × 64 f32: 24
//! accumulators of AVX-512's 32 registers).
//!
//! Every tile the loop nest needs is assembled on demand for its exact shape: fewer
//! rows at the M edge (the loop nest picks the variant at run time from the rows
//! left), one vector for narrow products, and a masked last vector at the N edge
//! (`vmaskmovps` with AVX2, a `k1` write mask with AVX-512), so no tile goes through a
//! stack buffer or falls back to Cranelift code when A's rows are a static stride
//! apart (always, once A is packed). Only run-time column counts still use the
//! portable tiles of `provider.rs`. One-row tiles with as many vectors as the
//! accumulators (several panels of a row-major B read in place) take the last one or
//! two rows, where a 1- or 2-row tile per panel would wait on its few FMA chains.
//!
//! The tiles also pack operands as they read them, so no pass of its own has to
//! (A in both families; B only in the AVX2 ones, see `copies_b`). A tile
//! reading A in place can copy the values it broadcasts to the packed layout
//! (`TileArgs::copy_a`): the first panel's tiles pack a transposed A for the other
//! panels while the FMAs run (the seed's first weight gradient reads X, 3.2 MB at
//! batch 1024, with a 3 KiB stride; one thread, fastest steps interleaved in one
//! process: batch 1024 9.85 → 9.67 ms, batch 100 0.935 → 0.920). A tile reading a
//! row-major B in place can store the B vectors it loads to a contiguous panel on the
//! stack (`TileArgs::copy_b`), which the panel's other row tiles read from L1 instead
//! of striding through 1 KiB rows that share a few L1 sets (batch 100: 0.921 → 0.902
//! ms on one thread, 0.501 → 0.485 on two). A tile may do both (then `rbx`, saved,
//! holds the B copy's address). Packing the forward pass's row-major X
//! the `copy_a` way measured no faster than reading it in place, so row-major A is
//! still read in place.
//!
//! Two helpers are assembled the same way: the dot products of `dots.rs` (one or two
//! rows of A times up to four stored rows of a transposed B, 8 lanes per ymm), and the pack of a
//! transposed B into panels (4 × 4 in-lane transposes instead of a scalar copy per
//! float: with the seed's 784 KiB weight stored `[out, in]`, a one-thread step at
//! batch 16 went from 0.230 to 0.195 ms, at 32 from 0.374 to 0.341, fastest steps).
//!
//! Results are bitwise those of the Cranelift kernels: each element is the same chain
//! of single-rounding FMAs over k within a K block (`acc = b·a + acc` either way), and
//! accumulation into C is the same addition.
//!
//! ```text
//! tile(a, a_row, b, b_step, kb, a_step, c, ldc, accumulate,   ; SysV: 6 in registers,
//!      [epilogue..., last], [copy_a], [copy_b])                ; the rest on the stack
//! ```

use crate::clif::{Fx, PTR};
use crate::codegen::codegen_err;
use crate::error::BackendError;
use crate::provider::{
    ARows, CraneliftTiles, GemmShape, MicroKernelProvider, Step, TileArgs, TileEpilogue, TileFinish, TileShape,
};
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{types, AbiParam, InstBuilder, Signature, Value};
use cranelift_module::{FuncId, Linkage, Module};
use iced_x86::code_asm::*;
use std::cell::RefCell;
use std::collections::HashMap;

/// Rows of every assembled tile.
const MR: usize = 6;
/// Depth of one K block, the same for every family: the blocks decide where partial
/// sums are rounded into C, so the bits depend on it (a 256 × 16 f32 panel is 16 KiB).
const KC: usize = 256;

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

/// The epilogue of a tile variant (see `TileEpilogue`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Ep {
    None,
    Sgd,
    Dense { bias: bool, relu: bool },
    Mask,
}

impl Ep {
    fn of(finish: Option<&TileFinish>) -> Ep {
        match finish.map(|f| f.epilogue) {
            None => Ep::None,
            Some(TileEpilogue::Sgd { .. }) => Ep::Sgd,
            Some(TileEpilogue::Dense { bias, relu }) => Ep::Dense { bias: bias.is_some(), relu },
            Some(TileEpilogue::ReluMask { .. }) => Ep::Mask,
        }
    }

    /// Arguments after the nine of every tile: the epilogue's, then `last`.
    fn extra_args(self) -> usize {
        match self {
            Ep::None => 0,
            Ep::Sgd => 4,
            Ep::Dense { bias, .. } => 1 + bias as usize,
            Ep::Mask => 2,
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Ep::None => "",
            Ep::Sgd => "_sgd",
            Ep::Dense { bias: true, relu: true } => "_bias_relu",
            Ep::Dense { bias: true, relu: false } => "_bias",
            Ep::Dense { bias: false, relu: true } => "_relu",
            Ep::Dense { bias: false, relu: false } => "_copy",
            Ep::Mask => "_relu_mask",
        }
    }
}

/// An assembled function: a tile variant, or a helper of the dot products
/// (`dots.rs`) or of the pack of a transposed B.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kernel {
    Tile(Variant),
    Dots { k: usize, cols: usize, rows: usize },
    PackTransposed { nr: usize },
}

pub(crate) struct Avx2Tiles {
    /// 512-bit vectors (AVX-512F) instead of 256-bit ones.
    wide: bool,
    /// For tiles of a run-time column count.
    fallback: CraneliftTiles,
    /// The functions defined in the current module (`prepare` starts a new one).
    kernels: RefCell<HashMap<Kernel, FuncId>>,
    /// Name and code size of every variant defined, for profilers and `--emit asm`.
    defined: RefCell<Vec<(FuncId, String, usize)>>,
    /// The first error met while defining a variant (`emit_tile` cannot return it).
    error: RefCell<Option<BackendError>>,
}

impl Avx2Tiles {
    pub fn new(wide: bool) -> Avx2Tiles {
        Avx2Tiles {
            wide,
            fallback: CraneliftTiles { fixed: None },
            kernels: RefCell::default(),
            defined: RefCell::default(),
            error: RefCell::default(),
        }
    }

    /// Whether this CPU can run the AVX2 kernels (assembled for the System V calling
    /// convention of Unix-like systems).
    pub fn supported() -> bool {
        cfg!(unix) && std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }

    /// Whether this CPU can run the AVX-512 kernels.
    pub fn supported_512() -> bool {
        Self::supported() && std::is_x86_feature_detected!("avx512f")
    }

    /// f32 lanes of one vector register.
    fn lanes(&self) -> usize {
        if self.wide {
            16
        } else {
            8
        }
    }

    /// Vectors per row of the widest tile: 6 × 2 ymm (16 registers), 6 × 4 zmm (32).
    fn max_vecs(&self) -> usize {
        if self.wide {
            4
        } else {
            2
        }
    }

    /// Vectors of the widest one-row tile: as many accumulators as the 6-row tiles.
    fn max_row_vecs(&self) -> usize {
        MR * self.max_vecs()
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

    /// The function of `kernel` in the current module, assembled and defined on first
    /// use.
    fn kernel(&self, fx: &mut Fx, kernel: Kernel) -> Option<FuncId> {
        if let Some(&id) = self.kernels.borrow().get(&kernel) {
            return Some(id);
        }
        let (name, params) = match kernel {
            Kernel::Tile(v) => {
                let (family, cols) = (if self.wide { "avx512" } else { "avx2" }, (v.vecs - 1) * self.lanes() + v.lanes);
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
                Kernel::Tile(v) if self.wide => assemble_avx512(v),
                Kernel::Tile(v) => assemble_avx2(v),
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

    /// Calls variant `v` on the tile of `args` (A rows a static stride apart).
    fn call(&self, fx: &mut Fx, v: Variant, base: Value, stride: i64, args: &TileArgs) -> bool {
        let Some(kernel) = self.kernel(fx, Kernel::Tile(v)) else { return false };
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
                TileEpilogue::Dense { bias, .. } => call.extend(bias),
                TileEpilogue::ReluMask { h } => call.push(h),
            }
            call.push(f.last);
        }
        call.extend(args.copy_a);
        call.extend(args.copy_b);
        fx.call(kernel, &call);
        true
    }
}

/// Machine code of the dot products of `rows` (1 or 2) rows of A with `cols` (1 to 4)
/// stored rows of a transposed B, `k` terms each (`k ≥ 8`), in `dots.rs`'s order of
/// operations: an 8-lane accumulator per element is its two f32x4 ones (lanes
/// `k mod 8`), its low half plus its high half is their sum, then `(s0 + s1) + (s2 +
/// s3)` and the last `k mod 8` terms by scalar FMAs, so the bits are the Cranelift
/// version's. Two rows load each B vector once for both.
///
/// ```text
/// dots(a, a_row, b, b_col, c, ldc)   ; c[i·ldc + j] = a[i·a_row..] · b[j·b_col..] (bytes)
/// ```
fn assemble_dots(k: usize, cols: usize, rows: usize) -> Result<Vec<u8>, IcedError> {
    let mut a = CodeAssembler::new(64)?;
    let ymm = [ymm0, ymm1, ymm2, ymm3, ymm4, ymm5, ymm6, ymm7];
    let xmm = [xmm0, xmm1, xmm2, xmm3, xmm4, xmm5, xmm6, xmm7];
    // rdi, rsi = A's rows; rdx, r10, r11, rax = B's rows; r8, r9 = C's rows; rcx = the
    // byte offset along K. Accumulator of row i, column j: ymm[4i + j].
    let (a_rows, b_rows, c_rows) = ([rdi, rsi], [rdx, r10, r11, rax], [r8, r9]);
    a.lea(r10, qword_ptr(rdx + rcx))?;
    a.lea(r11, qword_ptr(rdx + rcx * 2))?;
    a.lea(rax, qword_ptr(r10 + rcx * 2))?;
    a.add(rsi, rdi)?;
    a.add(r9, r8)?;
    for i in 0..rows {
        for j in 0..cols {
            a.vxorps(ymm[4 * i + j], ymm[4 * i + j], ymm[4 * i + j])?;
        }
    }
    let steps = k / 8;
    a.xor(ecx, ecx)?;
    let mut k_loop = a.create_label();
    a.set_label(&mut k_loop)?;
    let xs = [ymm8, ymm9];
    for i in 0..rows {
        a.vmovups(xs[i], ymmword_ptr(a_rows[i] + rcx))?;
    }
    for (j, &row) in b_rows.iter().enumerate().take(cols) {
        a.vmovups(ymm10, ymmword_ptr(row + rcx))?;
        for i in 0..rows {
            a.vfmadd231ps(ymm[4 * i + j], xs[i], ymm10)?;
        }
    }
    a.add(rcx, 32)?;
    a.cmp(rcx, (steps * 32) as i32)?;
    a.jne(k_loop)?;
    for i in 0..rows {
        for j in 0..cols {
            let (v, x) = (ymm[4 * i + j], xmm[4 * i + j]);
            a.vextractf128(xmm11, v, 1)?;
            a.vaddps(x, x, xmm11)?;
            a.vmovshdup(xmm11, x)?;
            a.vaddps(xmm11, x, xmm11)?;
            a.vmovhlps(xmm12, xmm12, xmm11)?;
            a.vaddss(x, xmm11, xmm12)?;
            // rcx is K's vector part in bytes: small offsets past it, whatever K.
            for t in 0..k - steps * 8 {
                a.vmovss(xmm13, dword_ptr(a_rows[i] + rcx + t * 4))?;
                a.vfmadd231ss(x, xmm13, dword_ptr(b_rows[j] + rcx + t * 4))?;
            }
            a.vmovss(dword_ptr(c_rows[i] + j * 4), x)?;
        }
    }
    a.vzeroupper()?;
    a.ret()?;
    a.assemble(0)
}

/// Machine code that packs 16 columns of a transposed B (16 stored rows, contiguous
/// along K, `row` bytes apart) into a panel of `nr` floats per k: four k at a time,
/// each two stored rows' 4 floats loaded into one ymm (rows `j` and `j + 4`) and
/// transposed in-lane, 4 × 4, by `unpck`/`shufps`; the last `k mod 4` one float at a
/// time. Only copies, so the bits are any pack's.
///
/// ```text
/// pack(src, row, dst, k)   ; dst[k'·nr + j] = src[j·row bytes + 4k'], j < 16, k' < k
/// ```
fn assemble_pack_transposed(nr: usize) -> Result<Vec<u8>, IcedError> {
    let mut a = CodeAssembler::new(64)?;
    let dst_row = nr * 4;
    // rdi = rows 0–7 at k, r11 = rows 8–15 at k; rsi = row bytes, r8 = 3·row,
    // r9 = 5·row, r10 = 7·row; rdx = dst at k; rcx = k left.
    a.lea(r8, qword_ptr(rsi + rsi * 2))?;
    a.lea(r9, qword_ptr(rsi + rsi * 4))?;
    a.lea(r10, qword_ptr(r8 + rsi * 4))?;
    a.lea(r11, qword_ptr(rdi + rsi * 8))?;
    // Row `j` of a group of 8 at `base`.
    let row = |base: AsmRegister64, j: usize| -> AsmMemoryOperand {
        match j {
            0 => base + 0,
            1 => base + rsi,
            2 => base + rsi * 2,
            3 => base + r8,
            4 => base + rsi * 4,
            5 => base + r9,
            6 => base + r8 * 2,
            _ => base + r10,
        }
    };
    let mut tail = a.create_label();
    let mut done = a.create_label();
    let mut k_loop = a.create_label();
    a.cmp(rcx, 4)?;
    a.jb(tail)?;
    a.set_label(&mut k_loop)?;
    for (half, base) in [rdi, r11].into_iter().enumerate() {
        let (r, t) = ([ymm0, ymm1, ymm2, ymm3], [ymm4, ymm5, ymm6, ymm7]);
        let rx = [xmm0, xmm1, xmm2, xmm3];
        for j in 0..4 {
            a.vmovups(rx[j], xmmword_ptr(row(base, j)))?;
            a.vinsertf128(r[j], r[j], xmmword_ptr(row(base, j + 4)), 1)?;
        }
        a.vunpcklps(t[0], r[0], r[1])?;
        a.vunpckhps(t[1], r[0], r[1])?;
        a.vunpcklps(t[2], r[2], r[3])?;
        a.vunpckhps(t[3], r[2], r[3])?;
        a.vshufps(r[0], t[0], t[2], 0x44)?;
        a.vshufps(r[1], t[0], t[2], 0xEE)?;
        a.vshufps(r[2], t[1], t[3], 0x44)?;
        a.vshufps(r[3], t[1], t[3], 0xEE)?;
        for (kk, &v) in r.iter().enumerate() {
            a.vmovups(ymmword_ptr(rdx + kk * dst_row + half * 32), v)?;
        }
    }
    a.add(rdi, 16)?;
    a.add(r11, 16)?;
    a.add(rdx, (4 * dst_row) as i32)?;
    a.sub(rcx, 4)?;
    a.cmp(rcx, 4)?;
    a.jae(k_loop)?;
    a.set_label(&mut tail)?;
    a.test(rcx, rcx)?;
    a.jz(done)?;
    let mut one_k = a.create_label();
    a.set_label(&mut one_k)?;
    for (half, base) in [rdi, r11].into_iter().enumerate() {
        for j in 0..8 {
            a.vmovss(xmm0, dword_ptr(row(base, j)))?;
            a.vmovss(dword_ptr(rdx + (half * 8 + j) * 4), xmm0)?;
        }
    }
    a.add(rdi, 4)?;
    a.add(r11, 4)?;
    a.add(rdx, dst_row as i32)?;
    a.dec(rcx)?;
    a.jnz(one_k)?;
    a.set_label(&mut done)?;
    a.vzeroupper()?;
    a.ret()?;
    a.assemble(0)
}

fn asm_err(e: IcedError) -> BackendError {
    codegen_err(format!("assembling a matrix-product tile: {e}"))
}

/// Machine code of tile variant `v`, for one vector width: `$regs` are the vector
/// registers (`MR × $maxv` accumulators, `$maxv` B registers, two broadcast
/// registers), `$ptr` the memory-operand constructor of that width, `$bytes` the bytes
/// of one vector, and `$width` (`ymm` or `zmm`) selects the instructions that differ
/// (zeroing, prefetch, masking a partial last vector).
macro_rules! tile_kernel {
    ($name:ident, [$($reg:ident),*], $ptr:ident, $bytes:expr, $width:ident, $maxv:expr) => {
        fn $name(v: Variant) -> Result<Vec<u8>, IcedError> {
            let r = [$($reg),*];
            let lanes = $bytes / 4;
            // MR × $maxv accumulators, then the B registers, then two broadcast ones.
            let n_acc = MR * $maxv;
            let (acc, b, x) = (&r[..v.rows * v.vecs], &r[n_acc..n_acc + $maxv], [r[n_acc + $maxv], r[n_acc + $maxv + 1]]);
            let acc_at = |row: usize, j: usize| acc[row * v.vecs + j];
            let partial = v.lanes < lanes;
            let mut a = CodeAssembler::new(64)?;
            // rdi = a, rsi = a_row (bytes), rdx = b, rcx = b_step, r8 = kb, r9 = a_step;
            // [rsp+8] = c, [rsp+16] = ldc, [rsp+24] = accumulate, then the epilogue's
            // arguments, then where A is copied to (r10; rax carries the values), then
            // where B is copied to (r10, or rbx with A: saved, so the stack arguments
            // are 8 bytes further, `pushed`).
            let both = v.copy_a && v.copy_b;
            let pushed: i32 = if both { 8 } else { 0 };
            let copies = 8 + pushed + 8 * (3 + v.ep.extra_args() as i32);
            let b_copy = if both { rbx } else { r10 };
            if both {
                a.push(rbx)?;
            }
            for &v in acc {
                tile_kernel!(@zero $width, a, v);
            }
            if v.copy_a || v.copy_b {
                a.mov(r10, qword_ptr(rsp + copies))?;
            }
            if both {
                a.mov(rbx, qword_ptr(rsp + copies + 8))?;
            }
            if v.rows > 3 {
                a.lea(r11, qword_ptr(rsi + rsi * 2))?;
                a.add(r11, rdi)?;
            }
            let mut store = a.create_label();
            let mut k_loop = a.create_label();
            a.test(r8, r8)?;
            a.jz(store)?;
            a.set_label(&mut k_loop)?;
            if v.rows == 1 && v.vecs > $maxv {
                // A one-row tile across several panels: one broadcast, and B straight
                // from memory into each FMA (`x·b + acc` is `b·x + acc`, bit for bit).
                a.vbroadcastss(x[0], dword_ptr(rdi))?;
                for (j, &acc) in acc.iter().enumerate() {
                    a.vfmadd231ps(acc, x[0], $ptr(rdx + j * $bytes))?;
                }
            } else {
                tile_kernel!(@prefetch $width, a, v.vecs);
                for j in 0..v.vecs {
                    a.vmovups(b[j], $ptr(rdx + j * $bytes))?;
                    if v.copy_b {
                        a.vmovups($ptr(b_copy + j * $bytes), b[j])?;
                    }
                }
                let rows = [
                    dword_ptr(rdi),
                    dword_ptr(rdi + rsi),
                    dword_ptr(rdi + rsi * 2),
                    dword_ptr(r11),
                    dword_ptr(r11 + rsi),
                    dword_ptr(r11 + rsi * 2),
                ];
                for (i, row) in rows.into_iter().take(v.rows).enumerate() {
                    if v.copy_a {
                        // This row's A value to the packed tile, through a free
                        // general register (any row stride).
                        a.mov(eax, row)?;
                        a.mov(dword_ptr(r10 + 4 * i), eax)?;
                    }
                    a.vbroadcastss(x[i % 2], row)?;
                    for j in 0..v.vecs {
                        a.vfmadd231ps(acc_at(i, j), b[j], x[i % 2])?;
                    }
                }
            }
            a.add(rdi, r9)?;
            if v.rows > 3 {
                a.add(r11, r9)?;
            }
            if v.copy_a {
                a.add(r10, (MR * 4) as i32)?;
            }
            if v.copy_b {
                a.add(b_copy, (v.vecs * $bytes) as i32)?;
            }
            a.add(rdx, rcx)?;
            a.dec(r8)?;
            a.jnz(k_loop)?;

            // C = acc or C += acc, row by row; the B and broadcast registers are free.
            a.set_label(&mut store)?;
            a.mov(rax, qword_ptr(rsp + (pushed + 8)))?;
            a.mov(r10, qword_ptr(rsp + (pushed + 16)))?;
            a.mov(rsi, qword_ptr(rsp + (pushed + 24)))?;
            let mut mask = a.create_label();
            let mut epilogue = a.create_label();
            let extra = v.ep.extra_args();
            if extra > 0 {
                // The last argument: is this the last K block?
                a.mov(rcx, qword_ptr(rsp + (pushed + 8 + 8 * (3 + extra as i32 - 1))))?;
            }
            if partial {
                tile_kernel!(@mask $width, a, v.lanes, x[1], mask);
            }
            if extra > 0 {
                a.test(rcx, rcx)?;
                a.jnz(epilogue)?;
            }
            let mut overwrite = a.create_label();
            let mut done = a.create_label();
            a.test(rsi, rsi)?;
            a.jz(overwrite)?;
            for add in [true, false] {
                if !add {
                    a.set_label(&mut overwrite)?;
                }
                for i in 0..v.rows {
                    for j in 0..v.vecs {
                        let (c, at) = (acc_at(i, j), $ptr(rax + j * $bytes));
                        if partial && j + 1 == v.vecs {
                            tile_kernel!(@masked $width, a, c, at, add, x[1], x[0]);
                        } else {
                            if add {
                                a.vaddps(c, c, at)?;
                            }
                            a.vmovups(at, c)?;
                        }
                    }
                    if i + 1 < v.rows {
                        a.add(rax, r10)?;
                    }
                }
                a.jmp(done)?;
            }
            if extra > 0 {
                // The last K block with the epilogue, in `epilogue.rs`/`update.rs`'s order
                // of operations: the finished C (acc, plus the old C when accumulating),
                // then the epilogue. rdi = p, bias or h (the first extra argument);
                // x0 = lr or zero; x1 = the AVX2 mask; b0, b1 = temporaries.
                a.set_label(&mut epilogue)?;
                a.mov(rdi, qword_ptr(rsp + (pushed + 32)))?;
                let (k, m, t, t2) = (x[0], x[1], b[0], b[1]);
                match v.ep {
                    Ep::Sgd => {
                        a.mov(rdx, qword_ptr(rsp + (pushed + 40)))?;
                        a.mov(r8, qword_ptr(rsp + (pushed + 48)))?;
                        a.vbroadcastss(k, dword_ptr(r8))?;
                    }
                    _ => tile_kernel!(@zero $width, a, k),
                }
                let mut ep_overwrite = a.create_label();
                a.test(rsi, rsi)?;
                a.jz(ep_overwrite)?;
                for add in [true, false] {
                    if !add {
                        a.set_label(&mut ep_overwrite)?;
                    }
                    for i in 0..v.rows {
                        for j in 0..v.vecs {
                            let c = acc_at(i, j);
                            let at_c = $ptr(rax + j * $bytes);
                            let at_x = $ptr(rdi + j * $bytes);
                            let at_o = $ptr(rdx + j * $bytes);
                            let masked = partial && j + 1 == v.vecs;
                            if add && masked {
                                tile_kernel!(@load_masked $width, a, t2, at_c, m);
                                a.vaddps(c, c, t2)?;
                            } else if add {
                                a.vaddps(c, c, at_c)?;
                            }
                            match v.ep {
                                // p_out = p - g·lr
                                Ep::Sgd => {
                                    a.vmulps(c, c, k)?;
                                    if masked {
                                        tile_kernel!(@load_masked $width, a, t, at_x, m);
                                    } else {
                                        a.vmovups(t, at_x)?;
                                    }
                                    a.vsubps(t, t, c)?;
                                    if masked {
                                        tile_kernel!(@store_masked $width, a, at_o, t, m);
                                    } else {
                                        a.vmovups(at_o, t)?;
                                    }
                                    continue;
                                }
                                // C = relu(C + bias): `max(0, x)` is `x < 0 ? 0 : x`,
                                // NaN and -0 included.
                                Ep::Dense { bias, relu } => {
                                    if bias && masked {
                                        tile_kernel!(@load_masked $width, a, t, at_x, m);
                                        a.vaddps(c, c, t)?;
                                    } else if bias {
                                        a.vaddps(c, c, at_x)?;
                                    }
                                    if relu {
                                        a.vmaxps(c, k, c)?;
                                    }
                                }
                                // C = h > 0 ? C : +0 (ordered: NaN in h gives 0)
                                Ep::Mask => {
                                    if masked {
                                        tile_kernel!(@load_masked $width, a, t, at_x, m);
                                    } else {
                                        a.vmovups(t, at_x)?;
                                    }
                                    tile_kernel!(@keep_where_positive $width, a, c, t, k);
                                }
                                Ep::None => {}
                            }
                            if masked {
                                tile_kernel!(@store_masked $width, a, at_c, c, m);
                            } else {
                                a.vmovups(at_c, c)?;
                            }
                        }
                        if i + 1 < v.rows {
                            a.add(rax, r10)?;
                            // The bias is the same for every row.
                            if !matches!(v.ep, Ep::Dense { bias: true, .. }) {
                                a.add(rdi, r10)?;
                            }
                            if v.ep == Ep::Sgd {
                                a.add(rdx, r10)?;
                            }
                        }
                    }
                    a.jmp(done)?;
                }
            }
            a.set_label(&mut done)?;
            a.vzeroupper()?;
            if both {
                a.pop(rbx)?;
            }
            a.ret()?;
            if partial {
                tile_kernel!(@data $width, a, v.lanes, mask);
            }
            // Only relative branches and loads: the code runs at any address.
            a.assemble(0)
        }
    };
    // Zeroing: `vxorps` on zmm would need AVX-512DQ; `vpxord` is AVX-512F.
    (@zero ymm, $a:ident, $v:expr) => {
        $a.vxorps($v, $v, $v)?
    };
    (@zero zmm, $a:ident, $v:expr) => {
        $a.vpxord($v, $v, $v)?
    };
    // AVX2: no software prefetch. B read in place strides a row (often 1 KiB) per k;
    // prefetching it eight rows ahead cost the AVX2 tiles 16% (100×784×256) and gained
    // the AVX-512 ones 10%, whose two lines per row outrun the hardware prefetcher.
    (@prefetch ymm, $a:ident, $vecs:expr) => {};
    (@prefetch zmm, $a:ident, $vecs:expr) => {
        for j in 0..$vecs {
            $a.prefetcht0(byte_ptr(rdx + rcx * 8 + j * 64))?;
        }
    };
    // AVX2: the mask is a vector (all ones in the written lanes) stored after the code.
    (@mask ymm, $a:ident, $lanes:expr, $m:expr, $label:ident) => {
        $a.vmovups($m, ymmword_ptr($label))?;
    };
    (@masked ymm, $a:ident, $c:expr, $at:expr, $add:expr, $m:expr, $t:expr) => {
        if $add {
            $a.vmaskmovps($t, $m, $at)?;
            $a.vaddps($c, $c, $t)?;
        }
        $a.vmaskmovps($at, $m, $c)?;
    };
    (@load_masked ymm, $a:ident, $dst:expr, $at:expr, $m:expr) => {
        $a.vmaskmovps($dst, $m, $at)?;
    };
    (@store_masked ymm, $a:ident, $at:expr, $src:expr, $m:expr) => {
        $a.vmaskmovps($at, $m, $src)?;
    };
    (@keep_where_positive ymm, $a:ident, $c:expr, $h:expr, $zero:expr) => {
        $a.vcmpps($h, $h, $zero, 0x1e)?; // GT_OQ
        $a.vandps($c, $c, $h)?;
    };
    (@data ymm, $a:ident, $lanes:expr, $label:ident) => {
        $a.set_label(&mut $label)?;
        let ones: Vec<u8> = (0..8).flat_map(|l| if l < $lanes { [0xff; 4] } else { [0; 4] }).collect();
        $a.db(&ones)?;
    };
    // AVX-512: write mask k1; masked-off lanes of memory operands never fault.
    (@mask zmm, $a:ident, $lanes:expr, $m:expr, $label:ident) => {
        $a.mov(r11d, ((1u32 << $lanes) - 1) as i32)?;
        $a.kmovw(k1, r11d)?;
    };
    (@masked zmm, $a:ident, $c:expr, $at:expr, $add:expr, $m:expr, $t:expr) => {
        if $add {
            $a.vaddps($c.k1(), $c, $at)?;
        }
        $a.vmovups($at.k1(), $c)?;
    };
    (@load_masked zmm, $a:ident, $dst:expr, $at:expr, $m:expr) => {
        let _ = $m;
        $a.vmovups($dst.k1().z(), $at)?;
    };
    (@store_masked zmm, $a:ident, $at:expr, $src:expr, $m:expr) => {
        let _ = $m;
        $a.vmovups($at.k1(), $src)?;
    };
    (@keep_where_positive zmm, $a:ident, $c:expr, $h:expr, $zero:expr) => {
        $a.vcmpps(k2, $h, $zero, 0x1e)?; // GT_OQ
        $a.vmovaps($c.k2().z(), $c)?;
    };
    (@data zmm, $a:ident, $lanes:expr, $label:ident) => {
        let _ = &mut $label;
    };
}

tile_kernel!(
    assemble_avx2,
    [ymm0, ymm1, ymm2, ymm3, ymm4, ymm5, ymm6, ymm7, ymm8, ymm9, ymm10, ymm11, ymm12, ymm13, ymm14, ymm15],
    ymmword_ptr,
    32,
    ymm,
    2
);
tile_kernel!(
    assemble_avx512,
    [
        zmm0, zmm1, zmm2, zmm3, zmm4, zmm5, zmm6, zmm7, zmm8, zmm9, zmm10, zmm11, zmm12, zmm13, zmm14, zmm15, zmm16,
        zmm17, zmm18, zmm19, zmm20, zmm21, zmm22, zmm23, zmm24, zmm25, zmm26, zmm27, zmm28, zmm29, zmm30, zmm31
    ],
    zmmword_ptr,
    64,
    zmm,
    4
);

impl MicroKernelProvider for Avx2Tiles {
    fn family(&self) -> &'static str {
        if self.wide {
            "avx512-asm"
        } else {
            "avx2-asm"
        }
    }

    fn vector_width(&self) -> crate::peak::VectorWidth {
        if self.wide {
            crate::peak::VectorWidth::V512
        } else {
            crate::peak::VectorWidth::V256
        }
    }

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

    fn tile_shape(&self, shape: &GemmShape) -> TileShape {
        // One vector per row when the whole product is that narrow: the panel is
        // then no wider than the output.
        match shape.n {
            Some(n) if n as usize <= self.lanes() => self.shape(1),
            _ => self.shape(self.max_vecs()),
        }
    }

    fn fuses_epilogues(&self) -> bool {
        true
    }

    fn reads_strided_a(&self) -> bool {
        true
    }

    // Copying A: measured on AVX2 (Zen 3), and on AVX-512 (Zen 4, one thread, against
    // the packing pass: the seed step at batch 100 0.756 → 0.740 ms, 256 1.93 → 1.88,
    // 1024 7.90 → 7.69, tenth percentiles; two threads alike).
    fn copies_a(&self) -> bool {
        true
    }

    // Copying B: measured on AVX2 (Zen 3). The AVX-512 tiles, whose panels are 64
    // floats wide (a 64 KiB K block, more than an L1) and which prefetch a B read in
    // place, keep the packing pass: on Zen 4 copying measured no faster (batch 100 1%
    // slower, 256 and 1024 within 0.5%, with A copied).
    fn copies_b(&self) -> bool {
        !self.wide
    }

    fn emit_tile(&self, fx: &mut Fx, tile: TileShape, args: &TileArgs) {
        let ep = Ep::of(args.finish.as_ref());
        let (copy_a, copy_b) = (args.copy_a.is_some(), args.copy_b.is_some());
        let variant = self.variant(tile, tile.mr, args.cols, ep).map(|v| Variant { copy_a, copy_b, ..v });
        // B is copied whole vectors at a time, so only by a tile as wide as its panel.
        let copyable = !copy_b || args.cols == tile.nr();
        if let (ARows::Uniform { base, stride }, Some(v), true) = (&args.a, variant, copyable) {
            if self.call(fx, v, *base, *stride, args) {
                return;
            }
        }
        if copy_a || copy_b {
            let e = codegen_err("internal: no assembled tile to copy A values or B rows");
            self.error.borrow_mut().get_or_insert(e);
        }
        if ep != Ep::None {
            // The loop nest fuses epilogues only where every tile is assembled.
            let e = codegen_err(format!("internal: no assembled tile for a fused epilogue ({} columns)", args.cols));
            self.error.borrow_mut().get_or_insert(e);
        }
        self.fallback.emit_tile(fx, tile, args)
    }

    fn row_tile_cols(&self) -> usize {
        self.max_row_vecs() * self.lanes()
    }

    fn emit_row_tile(&self, fx: &mut Fx, args: &TileArgs) {
        let l = self.lanes();
        let v = Variant {
            rows: 1,
            vecs: args.cols / l,
            lanes: l,
            ep: Ep::of(args.finish.as_ref()),
            copy_a: false,
            copy_b: false,
        };
        let fits = args.cols.is_multiple_of(l) && (1..=self.max_row_vecs()).contains(&v.vecs);
        if let (true, ARows::Uniform { base, stride }) = (fits, &args.a) {
            if self.call(fx, v, *base, *stride, args) {
                return;
            }
        }
        let e = codegen_err(format!("internal: no assembled one-row tile of {} columns", args.cols));
        self.error.borrow_mut().get_or_insert(e);
    }

    fn has_edge_tiles(&self) -> bool {
        true
    }

    fn emit_pack_transposed(&self, fx: &mut Fx, nr: usize, [src, row, dst, k]: [Value; 4]) -> bool {
        if !nr.is_multiple_of(16) {
            return false;
        }
        let Some(id) = self.kernel(fx, Kernel::PackTransposed { nr }) else { return false };
        for group in 0..nr / 16 {
            let off = fx.mul_imm(row, 16 * group as i64);
            let src = fx.add(src, off);
            let dst = fx.b.ins().iadd_imm_s(dst, 64 * group as i64);
            fx.call(id, &[src, row, dst, k]);
        }
        true
    }

    fn emit_dots(&self, fx: &mut Fx, k: usize, cols: usize, rows: usize, args: [Value; 6]) -> bool {
        // The loop compares K's byte offset with a 32-bit immediate.
        let fits = k.checked_mul(4).is_some_and(|bytes| bytes <= i32::MAX as usize);
        if k < 8 || !fits || !(1..=4).contains(&cols) || !(1..=2).contains(&rows) {
            return false;
        }
        match self.kernel(fx, Kernel::Dots { k, cols, rows }) {
            Some(id) => {
                fx.call(id, &args);
                true
            }
            None => false,
        }
    }

    fn emit_edge_tile(&self, fx: &mut Fx, tile: TileShape, args: &TileArgs, rows: Value) -> bool {
        let ARows::Uniform { base, stride } = args.a else { return false };
        let ep = Ep::of(args.finish.as_ref());
        let Some(variants) = (1..tile.mr).map(|r| self.variant(tile, r, args.cols, ep)).collect::<Option<Vec<_>>>()
        else {
            return false;
        };
        // Define every variant first: a failure leaves nothing half-emitted.
        if variants.iter().any(|&v| self.kernel(fx, Kernel::Tile(v)).is_none()) {
            return false;
        }
        // A chain of compares, not a jump table: it runs once per panel, and keeps
        // the code free of inline data.
        let after = fx.b.create_block();
        for (&v, last) in variants.iter().zip((1..variants.len() + 1).map(|i| i == variants.len())) {
            if last {
                self.call(fx, v, base, stride, args);
                break;
            }
            let (this, next) = (fx.b.create_block(), fx.b.create_block());
            let is = fx.b.ins().icmp_imm_s(IntCC::Equal, rows, v.rows as i64);
            fx.b.ins().brif(is, this, &[], next, &[]);
            fx.b.switch_to_block(this);
            self.call(fx, v, base, stride, args);
            fx.b.ins().jump(after, &[]);
            fx.b.switch_to_block(next);
        }
        fx.b.ins().jump(after, &[]);
        fx.b.switch_to_block(after);
        true
    }
}
