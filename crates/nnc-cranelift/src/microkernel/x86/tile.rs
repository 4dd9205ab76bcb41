//! The assembled register tiles, one function per variant, for AVX2 (ymm) and AVX-512
//! (zmm) from one template.

use super::{Ep, Variant, MR};
use iced_x86::code_asm::*;

/// Machine code of tile variants for one vector width, as a module `$name` with
/// `assemble(v)`: `$regty` is the type of its registers and `$regs` the registers
/// (`MR × $maxv` accumulators, `$maxv` B registers, two broadcast registers), `$ptr`
/// the memory-operand constructor of that width, `$bytes` the bytes of one vector,
/// and `$width` (`ymm` or `zmm`) selects the instructions that differ (zeroing,
/// prefetch, masking a partial last vector).
///
/// Arguments: rdi = a, rsi = a_row (bytes), rdx = b, rcx = b_step, r8 = kb, r9 =
/// a_step; [rsp+8] = c, [rsp+16] = ldc, [rsp+24] = accumulate, then the epilogue's
/// arguments, then where A is copied to (r10; rax carries the values), then where B
/// is copied to (r10, or rbx with A: saved, so the stack arguments are 8 bytes
/// further, `Frame::pushed`).
macro_rules! tile_kernel {
    ($name:ident, $regty:ty, [$($reg:ident),*], $ptr:ident, $bytes:expr, $width:ident, $maxv:expr) => {
        pub(super) mod $name {
            use super::*;

            /// The registers of one variant.
            struct Regs {
                acc: Vec<$regty>,
                b: Vec<$regty>,
                x: [$regty; 2],
                vecs: usize,
            }

            impl Regs {
                fn acc_at(&self, row: usize, j: usize) -> $regty {
                    self.acc[row * self.vecs + j]
                }
            }

            /// Where the stack arguments are, and which register holds the B copy.
            #[derive(Clone, Copy)]
            struct Frame {
                pushed: i32,
                b_copy: AsmRegister64,
                /// A partial last vector (masked).
                partial: bool,
            }

            pub(in super::super) fn assemble(v: Variant) -> Result<Vec<u8>, IcedError> {
                let r = [$($reg),*];
                // MR × $maxv accumulators, then the B registers, then two broadcast ones.
                let n_acc = MR * $maxv;
                let regs = Regs {
                    acc: r[..v.rows * v.vecs].to_vec(),
                    b: r[n_acc..n_acc + $maxv].to_vec(),
                    x: [r[n_acc + $maxv], r[n_acc + $maxv + 1]],
                    vecs: v.vecs,
                };
                let mut a = CodeAssembler::new(64)?;
                let both = v.copy_a && v.copy_b;
                let f = Frame { pushed: if both { 8 } else { 0 }, b_copy: if both { rbx } else { r10 }, partial: v.lanes < $bytes / 4 };
                let copies = 8 + f.pushed + 8 * (3 + v.ep.extra_args() as i32);
                if both {
                    a.push(rbx)?;
                }
                for &v in &regs.acc {
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
                k_step(&mut a, v, &regs, f)?;
                a.dec(r8)?;
                a.jnz(k_loop)?;

                a.set_label(&mut store)?;
                let (mask, epilogue, done) = (a.create_label(), a.create_label(), a.create_label());
                store_c(&mut a, v, &regs, f, (mask, epilogue, done))?;
                if v.ep.extra_args() > 0 {
                    apply_epilogue(&mut a, v, &regs, f, (epilogue, done))?;
                }
                let mut done = done;
                a.set_label(&mut done)?;
                a.vzeroupper()?;
                if both {
                    a.pop(rbx)?;
                }
                a.ret()?;
                if f.partial {
                    let mut mask = mask;
                    tile_kernel!(@data $width, a, v.lanes, mask);
                }
                // Only relative branches and loads: the code runs at any address.
                a.assemble(0)
            }

            /// One k: the FMAs, then the pointers to the next k.
            fn k_step(a: &mut CodeAssembler, v: Variant, regs: &Regs, f: Frame) -> Result<(), IcedError> {
                let (b, x) = (&regs.b, regs.x);
                if v.rows == 1 && v.vecs > $maxv {
                    // A one-row tile across several panels: one broadcast, and B straight
                    // from memory into each FMA (`x·b + acc` is `b·x + acc`, bit for bit).
                    a.vbroadcastss(x[0], dword_ptr(rdi))?;
                    for (j, &acc) in regs.acc.iter().enumerate() {
                        a.vfmadd231ps(acc, x[0], $ptr(rdx + j * $bytes))?;
                    }
                } else {
                    tile_kernel!(@prefetch $width, a, v.vecs);
                    for j in 0..v.vecs {
                        a.vmovups(b[j], $ptr(rdx + j * $bytes))?;
                        if v.copy_b {
                            a.vmovups($ptr(f.b_copy + j * $bytes), b[j])?;
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
                            a.vfmadd231ps(regs.acc_at(i, j), b[j], x[i % 2])?;
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
                    a.add(f.b_copy, (v.vecs * $bytes) as i32)?;
                }
                a.add(rdx, rcx)
            }

            /// C = acc or C += acc, row by row (the B and broadcast registers are free);
            /// on the last K block of a variant with an epilogue, to `epilogue` instead.
            fn store_c(
                a: &mut CodeAssembler,
                v: Variant,
                regs: &Regs,
                f: Frame,
                (mut mask, epilogue, done): (CodeLabel, CodeLabel, CodeLabel),
            ) -> Result<(), IcedError> {
                let pushed = f.pushed;
                a.mov(rax, qword_ptr(rsp + (pushed + 8)))?;
                a.mov(r10, qword_ptr(rsp + (pushed + 16)))?;
                a.mov(rsi, qword_ptr(rsp + (pushed + 24)))?;
                let extra = v.ep.extra_args();
                if extra > 0 {
                    // The last argument: is this the last K block?
                    a.mov(rcx, qword_ptr(rsp + (pushed + 8 + 8 * (3 + extra as i32 - 1))))?;
                }
                if f.partial {
                    tile_kernel!(@mask $width, a, v.lanes, regs.x[1], mask);
                }
                if extra > 0 {
                    a.test(rcx, rcx)?;
                    a.jnz(epilogue)?;
                }
                let mut overwrite = a.create_label();
                a.test(rsi, rsi)?;
                a.jz(overwrite)?;
                for add in [true, false] {
                    if !add {
                        a.set_label(&mut overwrite)?;
                    }
                    for i in 0..v.rows {
                        for j in 0..v.vecs {
                            let (c, at) = (regs.acc_at(i, j), $ptr(rax + j * $bytes));
                            if f.partial && j + 1 == v.vecs {
                                tile_kernel!(@masked $width, a, c, at, add, regs.x[1], regs.x[0]);
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
                let _ = &mut mask;
                Ok(())
            }

            /// The last K block with the epilogue, in `epilogue.rs`/`update.rs`'s order
            /// of operations: the finished C (acc, plus the old C when accumulating),
            /// then the epilogue. rdi = p, bias or h (the first extra argument); x0 = lr
            /// or zero; x1 = the AVX2 mask; b0, b1 = temporaries.
            fn apply_epilogue(
                a: &mut CodeAssembler,
                v: Variant,
                regs: &Regs,
                f: Frame,
                (mut epilogue, done): (CodeLabel, CodeLabel),
            ) -> Result<(), IcedError> {
                let pushed = f.pushed;
                a.set_label(&mut epilogue)?;
                a.mov(rdi, qword_ptr(rsp + (pushed + 32)))?;
                let k = regs.x[0];
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
                            epilogue_vector(a, v, regs, f, (i, j), add)?;
                        }
                        if i + 1 < v.rows {
                            a.add(rax, r10)?;
                            // The bias is the same for every row.
                            if !v.ep.bias() {
                                a.add(rdi, r10)?;
                            }
                            if v.ep == Ep::Sgd {
                                a.add(rdx, r10)?;
                            }
                        }
                    }
                    a.jmp(done)?;
                }
                Ok(())
            }

            /// The epilogue of vector `j` of row `i`.
            fn epilogue_vector(
                a: &mut CodeAssembler,
                v: Variant,
                regs: &Regs,
                f: Frame,
                (i, j): (usize, usize),
                add: bool,
            ) -> Result<(), IcedError> {
                let (k, m, t, t2) = (regs.x[0], regs.x[1], regs.b[0], regs.b[1]);
                let c = regs.acc_at(i, j);
                let at_c = $ptr(rax + j * $bytes);
                let at_x = $ptr(rdi + j * $bytes);
                let at_o = $ptr(rdx + j * $bytes);
                let masked = f.partial && j + 1 == v.vecs;
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
                        return Ok(());
                    }
                    // C = relu(C + bias): `max(0, x)` is `x < 0 ? 0 : x`, NaN and -0
                    // included.
                    Ep::Bias { .. } | Ep::Relu => {
                        if v.ep.bias() && masked {
                            tile_kernel!(@load_masked $width, a, t, at_x, m);
                            a.vaddps(c, c, t)?;
                        } else if v.ep.bias() {
                            a.vaddps(c, c, at_x)?;
                        }
                        if v.ep.relu() {
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
                Ok(())
            }
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
    // prefetching it eight rows ahead slowed the AVX2 tiles and sped up the AVX-512
    // ones, whose two lines per row outrun the hardware prefetcher (docs/matmul.md).
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
    avx2,
    AsmRegisterYmm,
    [ymm0, ymm1, ymm2, ymm3, ymm4, ymm5, ymm6, ymm7, ymm8, ymm9, ymm10, ymm11, ymm12, ymm13, ymm14, ymm15],
    ymmword_ptr,
    32,
    ymm,
    2
);
tile_kernel!(
    avx512,
    AsmRegisterZmm,
    [
        zmm0, zmm1, zmm2, zmm3, zmm4, zmm5, zmm6, zmm7, zmm8, zmm9, zmm10, zmm11, zmm12, zmm13, zmm14, zmm15, zmm16,
        zmm17, zmm18, zmm19, zmm20, zmm21, zmm22, zmm23, zmm24, zmm25, zmm26, zmm27, zmm28, zmm29, zmm30, zmm31
    ],
    zmmword_ptr,
    64,
    zmm,
    4
);
