//! The assembled pack of a transposed B into panels.

use iced_x86::code_asm::*;

/// Machine code that packs 16 columns of a transposed B (16 stored rows, contiguous
/// along K, `row` bytes apart) into a panel of `nr` floats per k: four k at a time,
/// each two stored rows' 4 floats loaded into one ymm (rows `j` and `j + 4`) and
/// transposed in-lane, 4 × 4, by `unpck`/`shufps`; the last `k mod 4` one float at a
/// time. Only copies, so the bits are any pack's.
///
/// ```text
/// pack(src, row, dst, k)   ; dst[k'·nr + j] = src[j·row bytes + 4k'], j < 16, k' < k
/// ```
pub(super) fn assemble_pack_transposed(nr: usize) -> Result<Vec<u8>, IcedError> {
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
