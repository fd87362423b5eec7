//! Dataset sizes: `10G` on the command line, bytes on the wire, `10.0G` for people. Units are
//! binary (K = 1024), as Flocker's were; `GB`-style decimal units are refused rather than
//! silently read as binary.

const UNITS: [(char, u32); 5] = [('K', 1), ('M', 2), ('G', 3), ('T', 4), ('P', 5)];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error(
        "size '{0}' is not a number of bytes or a number with K, M, G, T or P (binary: 1G = 1024M), like 10G"
    )]
    Malformed(String),
    #[error("size '{0}' uses a decimal unit; write it in binary units, like 10G or 10GiB")]
    Decimal(String),
    #[error("size '{0}' is too large")]
    TooLarge(String),
}

/// Bytes from `10G`, `10GiB`, `1.5T`, `512M` or a plain number of bytes.
pub fn parse(text: &str) -> Result<u64, SizeError> {
    let trimmed = text.trim();
    let digits_end =
        trimmed.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(digits_end);
    let malformed = || SizeError::Malformed(text.to_owned());
    let exponent = match unit.trim() {
        "" | "B" => 0,
        unit => unit_exponent(unit).ok_or_else(|| {
            if unit.len() == 2 && unit.ends_with('B') {
                SizeError::Decimal(text.to_owned())
            } else {
                malformed()
            }
        })?,
    };
    let value: f64 = number.parse().map_err(|_| malformed())?;
    let bytes = value * 1024f64.powi(exponent as i32);
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(SizeError::TooLarge(text.to_owned()));
    }
    if exponent == 0 && number.contains('.') {
        return Err(malformed());
    }
    Ok(bytes.round() as u64)
}

/// `G`, `g`, `Gi` or `GiB` → 3.
fn unit_exponent(unit: &str) -> Option<u32> {
    let mut chars = unit.chars();
    let letter = chars.next()?.to_ascii_uppercase();
    let (_, exponent) = UNITS.iter().find(|(u, _)| *u == letter)?;
    matches!(chars.as_str(), "" | "i" | "iB").then_some(*exponent)
}

/// `75.0G`, `64.0M`, `512B`: the largest unit that keeps the number at least 1.
pub fn human(bytes: u64) -> String {
    let Some((letter, exponent)) =
        UNITS.iter().rev().find(|(_, exponent)| bytes >= 1024u64.pow(*exponent))
    else {
        return format!("{bytes}B");
    };
    format!("{:.1}{letter}", bytes as f64 / 1024f64.powi(*exponent as i32))
}

pub use flocker_api::units::progress;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_units_in_every_spelling() {
        assert_eq!(parse("10G"), Ok(10 << 30));
        assert_eq!(parse("10GiB"), Ok(10 << 30));
        assert_eq!(parse("10gi"), Ok(10 << 30));
        assert_eq!(parse("512M"), Ok(512 << 20));
        assert_eq!(parse("1.5T"), Ok(3 << 39));
        assert_eq!(parse(" 67108864 "), Ok(64 << 20));
        assert_eq!(parse("4096B"), Ok(4096));
    }

    #[test]
    fn decimal_units_are_refused_with_the_way_out() {
        assert_eq!(parse("10GB"), Err(SizeError::Decimal("10GB".into())));
        assert!(parse("10GB").unwrap_err().to_string().contains("10GiB"));
    }

    #[test]
    fn nonsense_is_refused() {
        for text in ["", "G", "ten", "10X", "10 GiBs", "-1G", "1.5", "1.2.3G"] {
            assert!(parse(text).is_err(), "{text:?} was accepted");
        }
        assert_eq!(parse("99999999999P"), Err(SizeError::TooLarge("99999999999P".into())));
    }

    #[test]
    fn human_sizes_pick_the_largest_unit() {
        assert_eq!(human(75 << 30), "75.0G");
        assert_eq!(human(64 << 20), "64.0M");
        assert_eq!(human(1536 << 20), "1.5G");
        assert_eq!(human(512), "512B");
    }
}
