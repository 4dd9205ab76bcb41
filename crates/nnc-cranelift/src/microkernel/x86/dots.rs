//! The assembled dot products of `kernels/matmul/dots.rs`.

use iced_x86::code_asm::*;

/// Machine code of the dot products of `rows` (1 or 2) rows of A with `cols` (1 to 4)
/// stored rows of a transposed B, `k` terms each (`k ≥ 8`), in `kernels/matmul/dots.rs`'s order of
/// operations: an 8-lane accumulator per element is its two f32x4 ones (lanes
/// `k mod 8`), its low half plus its high half is their sum, then `(s0 + s1) + (s2 +
/// s3)` and the last `k mod 8` terms by scalar FMAs, so the bits are the Cranelift
/// version's. Two rows load each B vector once for both.
///
/// ```text
/// dots(a, a_row, b, b_col, c, ldc)   ; c[i·ldc + j] = a[i·a_row..] · b[j·b_col..] (bytes)
/// ```
pub(super) fn assemble_dots(k: usize, cols: usize, rows: usize) -> Result<Vec<u8>, IcedError> {
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
