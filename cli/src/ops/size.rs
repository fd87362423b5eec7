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

/// Bytes in binary units as people say them: `412 MiB`, `1.5 GiB`, `10 B`; tenths only where
/// they say something (from GiB up, below 100), never `412.3 MiB` nor `1.0 GiB`. The same words
/// as the dataset agent's log uses for a push.
pub fn iec(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut unit = 0;
    while unit + 1 < UNITS.len() && bytes >= 1 << (10 * (unit + 1)) {
        unit += 1;
    }
    let tenths = (bytes as f64 * 10.0 / (1u64 << (10 * unit)) as f64).round() as u64;
    if unit >= 3 && tenths < 1000 && !tenths.is_multiple_of(10) {
        format!("{}.{} {}", tenths / 10, tenths % 10, UNITS[unit])
    } else {
        format!("{} {}", (tenths + 5) / 10, UNITS[unit])
    }
}

/// How far a copy has come: `412 MiB of 1 GiB`, or `412 MiB` when the whole is not known.
pub fn progress(done: u64, whole: Option<u64>) -> String {
    match whole {
        Some(whole) => format!("{} of {}", iec(done), iec(whole)),
        None => iec(done),
    }
}

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

    #[test]
    fn iec_sizes_read_as_people_say_them() {
        assert_eq!(iec(412 << 20), "412 MiB");
        assert_eq!(iec(1 << 30), "1 GiB");
        assert_eq!(iec(3 << 29), "1.5 GiB");
        assert_eq!(iec((412 << 20) + (300 << 10)), "412 MiB", "no tenths below GiB");
        assert_eq!(iec(10), "10 B");
        assert_eq!(iec(0), "0 B");
        assert_eq!(iec(2048), "2 KiB");
        assert_eq!(iec(150 << 30), "150 GiB", "no tenths from 100 up");
        assert_eq!(iec(3 << 49), "1.5 PiB");
        assert_eq!(iec(u64::MAX), "16384 PiB");
    }

    #[test]
    fn progress_says_of_what_when_it_is_known() {
        assert_eq!(progress(412 << 20, Some(1 << 30)), "412 MiB of 1 GiB");
        assert_eq!(progress(3 << 20, None), "3 MiB");
    }
}
