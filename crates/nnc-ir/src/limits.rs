//! The memory budget: how many bytes a model or a data set may need before nnc
//! refuses to load it.
//!
//! It lives here, in the crate every stage depends on, so the ONNX importer, the data
//! set readers and the CLI check sizes against one type and word their errors the same
//! way: "initializer fc1.weight needs 12.0 GiB (limit 11.7 GiB, --max-memory)". Sizes
//! are checked from declared shapes *before* anything of that size is allocated.

use std::fmt;
use std::sync::OnceLock;

/// The budget when physical memory cannot be read (not Linux): 8 GiB.
pub const FALLBACK_BYTES: u64 = 8 << 30;

/// A limit in bytes on what one load (a model, a data set, a training step) may need.
/// The default is half of physical memory ([`physical_memory`]), or
/// [`FALLBACK_BYTES`] where that is unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemoryBudget {
    bytes: u64,
}

impl Default for MemoryBudget {
    fn default() -> MemoryBudget {
        static DEFAULT: OnceLock<u64> = OnceLock::new();
        let bytes = *DEFAULT.get_or_init(|| physical_memory().map_or(FALLBACK_BYTES, |b| (b / 2).max(1)));
        MemoryBudget { bytes }
    }
}

impl MemoryBudget {
    /// A budget of `bytes` (at least one byte).
    pub fn from_bytes(bytes: u64) -> MemoryBudget {
        MemoryBudget { bytes: bytes.max(1) }
    }

    /// No limit beyond what the address space allows.
    pub fn unlimited() -> MemoryBudget {
        MemoryBudget { bytes: u64::MAX }
    }

    pub fn bytes(self) -> u64 {
        self.bytes
    }

    /// Parses a size: a byte count (`1048576`) or a number with a binary unit
    /// (`512K`, `512M`, `8G`, `1T`, also written `8GiB` or `8GB`; case does not
    /// matter; `1.5G` is allowed). Units are powers of 1024.
    pub fn parse(text: &str) -> Result<MemoryBudget, String> {
        let bad = || format!("invalid size \"{text}\": expected bytes or a number with K, M, G or T (e.g. 512M, 8G)");
        let t = text.trim();
        let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
        let (number, unit) = t.split_at(split);
        let unit = unit.trim().to_ascii_lowercase();
        let unit = unit.strip_suffix("ib").or_else(|| unit.strip_suffix('b')).unwrap_or(&unit);
        let scale: u64 = match unit {
            "" => 1,
            "k" => 1 << 10,
            "m" => 1 << 20,
            "g" => 1 << 30,
            "t" => 1 << 40,
            _ => return Err(bad()),
        };
        if number.is_empty() || number.chars().filter(|&c| c == '.').count() > 1 || number == "." {
            return Err(bad());
        }
        let bytes = if number.contains('.') {
            let v: f64 = number.parse().map_err(|_| bad())?;
            let b = (v * scale as f64).floor();
            if b >= u64::MAX as f64 {
                return Err(format!("invalid size \"{text}\": too large"));
            }
            b as u64
        } else {
            let v: u64 = number.parse().map_err(|_| format!("invalid size \"{text}\": too large"))?;
            v.checked_mul(scale).ok_or_else(|| format!("invalid size \"{text}\": too large"))?
        };
        if bytes == 0 {
            return Err(format!("invalid size \"{text}\": the limit must be at least 1 byte"));
        }
        Ok(MemoryBudget { bytes })
    }

    /// `Ok` if `need` bytes fit; otherwise "`what` needs X (limit Y, --max-memory)".
    pub fn check(self, what: impl fmt::Display, need: u64) -> Result<(), String> {
        if need <= self.bytes {
            Ok(())
        } else {
            Err(self.over(what, need))
        }
    }

    /// The message for `what` needing `need` bytes, over this budget.
    pub fn over(self, what: impl fmt::Display, need: u64) -> String {
        format!("{what} needs {} (limit {}, --max-memory)", format_bytes(need), self)
    }
}

impl fmt::Display for MemoryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.bytes == u64::MAX {
            f.write_str("unlimited")
        } else {
            f.write_str(&format_bytes(self.bytes))
        }
    }
}

impl std::str::FromStr for MemoryBudget {
    type Err = String;
    fn from_str(s: &str) -> Result<MemoryBudget, String> {
        MemoryBudget::parse(s)
    }
}

/// `512 B`, `1.0 KiB`, `12.0 GiB`: one decimal, binary units.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Physical memory in bytes (`MemTotal` of `/proc/meminfo`), where it can be read.
pub fn physical_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut parts = line["MemTotal:".len()..].split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    let scale = match parts.next() {
        Some("kB") | Some("KB") | Some("kiB") => 1024,
        None => 1,
        Some(_) => return None,
    };
    value.checked_mul(scale)
}

/// Bytes of `count` elements of `width` bytes, saturating (a declared size that does
/// not fit in u64 is over any budget anyway).
pub fn bytes_of(count: u64, width: u64) -> u64 {
    count.saturating_mul(width)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes() {
        assert_eq!(MemoryBudget::parse("1024").unwrap().bytes(), 1024);
        assert_eq!(MemoryBudget::parse("512M").unwrap().bytes(), 512 << 20);
        assert_eq!(MemoryBudget::parse("8G").unwrap().bytes(), 8 << 30);
        assert_eq!(MemoryBudget::parse("8gib").unwrap().bytes(), 8 << 30);
        assert_eq!(MemoryBudget::parse("8GB").unwrap().bytes(), 8 << 30);
        assert_eq!(MemoryBudget::parse("1.5K").unwrap().bytes(), 1536);
        assert_eq!(MemoryBudget::parse("2T").unwrap().bytes(), 2 << 40);
        for bad in ["", "G", "-1", "1.2.3G", "8X", "0", "0M", "99999999999999999999", "20000000000T", "."] {
            assert!(MemoryBudget::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn formats_sizes() {
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(1024), "1.0 KiB");
        assert_eq!(format_bytes(12 << 30), "12.0 GiB");
        assert_eq!(format_bytes(u64::MAX), "16.0 EiB");
        let b = MemoryBudget::parse("1M").unwrap();
        assert_eq!(b.check("x", 1 << 20), Ok(()));
        assert_eq!(
            b.check("initializer w", 3 << 20).unwrap_err(),
            "initializer w needs 3.0 MiB (limit 1.0 MiB, --max-memory)"
        );
    }

    #[test]
    fn default_is_half_of_physical_memory() {
        let d = MemoryBudget::default().bytes();
        match physical_memory() {
            Some(p) => assert_eq!(d, (p / 2).max(1)),
            None => assert_eq!(d, FALLBACK_BYTES),
        }
    }
}
