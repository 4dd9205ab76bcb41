//! Disassembly of the JIT'd machine code (`nnc compile --emit asm`), x86-64 only.
//!
//! Per function, in definition order (the kernels, then `step`): a header
//! `; <name> (<size> bytes)`, one Intel-syntax instruction per line prefixed with its
//! offset in the function, then the function's constant pool as `dd` words. Nothing
//! in the text depends on where the code was loaded, so the output of one graph is the
//! same on every run on the same CPU:
//!
//! - branch targets and RIP-relative operands inside the function are printed as
//!   offsets in it (`jne 0x0040`, `[0x01a0]`);
//! - other JIT'd functions and the host functions the code calls (`nnc_parallel_for`,
//!   the `nnc_logf` family) are printed by name (`call k3_dense_pack`,
//!   `lea rsi, [k3_dense]`, `mov rax, nnc_parallel_for`), wherever their address
//!   appears: as a branch target, a RIP-relative operand or a 64-bit immediate.
//!
//! The constant pool is found without help from Cranelift: it follows the code, and
//! the code reaches it only through RIP-relative operands, so the code ends at the
//! lowest in-function address such an operand refers to (past the instruction), less
//! the zero padding that aligns the first constant.

use crate::error::BackendError;
use crate::runtime::Compiled;

/// The machine code of every function of `compiled`, as text (see the module
/// documentation for the format). An error on a host that is not x86-64.
pub fn disassemble(compiled: &Compiled) -> Result<String, BackendError> {
    #[cfg(target_arch = "x86_64")]
    {
        Ok(x86::disassemble(&compiled.machine_code(), &host_symbols()))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = compiled;
        Err(BackendError::Codegen(format!("--emit asm supports x86-64 only (this host is {})", std::env::consts::ARCH)))
    }
}

/// The host functions the generated code can call, by the names it knows them by.
#[cfg(target_arch = "x86_64")]
fn host_symbols() -> Vec<(String, u64)> {
    let mut host: Vec<(String, u64)> =
        crate::host_math::MathFn::ALL.iter().map(|f| (f.symbol().to_string(), f.address() as u64)).collect();
    host.push(("nnc_parallel_for".to_string(), crate::runtime::pool::nnc_parallel_for as *const u8 as u64));
    host
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use iced_x86::{Decoder, DecoderOptions, Formatter, Instruction, IntelFormatter, SymbolResolver, SymbolResult};
    use std::fmt::Write;
    use std::sync::Arc;

    /// Every address the text names: JIT'd functions (`start..end`) and host functions.
    struct Symbols {
        functions: Vec<(u64, u64, String)>,
        host: Vec<(String, u64)>,
    }

    impl Symbols {
        fn name(&self, address: u64) -> Option<String> {
            for (start, end, name) in &self.functions {
                if address == *start {
                    return Some(name.clone());
                }
                if (*start..*end).contains(&address) {
                    return Some(format!("{name}+0x{:x}", address - start));
                }
            }
            self.host.iter().find(|(_, a)| *a == address).map(|(name, _)| name.clone())
        }
    }

    /// Names addresses for the formatter while it prints one function.
    struct Resolver {
        symbols: Arc<Symbols>,
        /// The function being printed: its address and size.
        base: u64,
        size: u64,
    }

    impl SymbolResolver for Resolver {
        fn symbol(
            &mut self,
            _instruction: &Instruction,
            _operand: u32,
            _instruction_operand: Option<u32>,
            address: u64,
            _address_size: u32,
        ) -> Option<SymbolResult<'_>> {
            let text = if address >= self.base && address - self.base < self.size {
                offset(address - self.base)
            } else {
                self.symbols.name(address)?
            };
            Some(SymbolResult::with_string(address, text))
        }
    }

    fn offset(off: u64) -> String {
        format!("0x{off:04x}")
    }

    pub(super) fn disassemble(functions: &[(String, u64, Vec<u8>)], host: &[(String, u64)]) -> String {
        let symbols = Arc::new(Symbols {
            functions: functions
                .iter()
                .map(|(name, addr, bytes)| (*addr, addr + bytes.len() as u64, name.clone()))
                .collect(),
            host: host.to_vec(),
        });
        let mut out = String::new();
        for (i, (name, addr, bytes)) in functions.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            function(&mut out, &symbols, name, *addr, bytes);
        }
        out
    }

    fn function(out: &mut String, symbols: &Arc<Symbols>, name: &str, base: u64, bytes: &[u8]) {
        let size = bytes.len() as u64;
        let _ = writeln!(out, "; {name} ({size} bytes)");
        let resolver = Resolver { symbols: Arc::clone(symbols), base, size };
        let mut formatter = IntelFormatter::with_options(Some(Box::new(resolver)), None);
        let options = formatter.options_mut();
        options.set_hex_prefix("0x");
        options.set_hex_suffix("");
        options.set_uppercase_hex(false);
        options.set_space_after_operand_separator(true);
        options.set_show_branch_size(false);
        options.set_branch_leading_zeros(false);
        options.set_rip_relative_addresses(false);
        options.set_signed_immediate_operands(true);

        // The code ends where the constants begin: at the lowest address in this
        // function, past the referring instruction, that a RIP-relative operand loads.
        let mut code_end = bytes.len();
        let mut decoder = Decoder::with_ip(64, bytes, base, DecoderOptions::NONE);
        let mut instruction = Instruction::default();
        let mut text = String::new();
        while decoder.can_decode() && decoder.position() < code_end {
            let pos = decoder.position();
            if bytes[pos..code_end].iter().all(|&b| b == 0) {
                break; // padding that aligns the first constant
            }
            decoder.decode_out(&mut instruction);
            if instruction.is_ip_rel_memory_operand() {
                let target = instruction.ip_rel_memory_address();
                if target > base + pos as u64 && target < base + size {
                    code_end = code_end.min((target - base) as usize);
                }
            }
            text.clear();
            if instruction.is_invalid() {
                let _ = write!(text, "(bad) db 0x{:02x}", bytes[pos]);
            } else {
                formatter.format(&instruction, &mut text);
            }
            let _ = writeln!(out, "  {:04x}: {text}", pos);
        }
        if code_end < bytes.len() {
            // The pool as little-endian 32-bit words (f32 constants read as their bit
            // patterns, e.g. 0x3f800000 for 1.0).
            let start = code_end;
            let _ = writeln!(out, "  ; constants");
            for (row, chunk) in bytes[start..].chunks(16).enumerate() {
                let words: Vec<String> = chunk
                    .chunks(4)
                    .map(|w| match <[u8; 4]>::try_from(w) {
                        Ok(w) => format!("0x{:08x}", u32::from_le_bytes(w)),
                        Err(_) => w.iter().map(|b| format!("0x{b:02x}")).collect::<Vec<_>>().join(", "),
                    })
                    .collect();
                let _ = writeln!(out, "  {:04x}: dd {}", start + row * 16, words.join(", "));
            }
        }
    }
}
