//! Checksummed JSON lines, the framing of our journals: one record per line,
//! `<crc32 hex> <json>\n`.
//! The checksum catches a damaged byte that would still parse as JSON.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// One record, framed and ready to write.
pub fn frame(value: &impl Serialize) -> Result<Vec<u8>, serde_json::Error> {
    let json = serde_json::to_vec(value)?;
    let mut line = format!("{:08x} ", crc32fast::hash(&json)).into_bytes();
    line.extend_from_slice(&json);
    line.push(b'\n');
    Ok(line)
}

/// Reads one line (without its `\n`) back, or says what is wrong with it.
pub fn unframe<T: DeserializeOwned>(line: &[u8]) -> Result<T, String> {
    let (checksum, json) = match line.split_first_chunk::<9>() {
        Some((head, json)) if head[8] == b' ' => (&head[..8], json),
        _ => return Err("the record has no checksum".to_owned()),
    };
    let expected = std::str::from_utf8(checksum)
        .ok()
        .and_then(|hex| u32::from_str_radix(hex, 16).ok())
        .ok_or("the record's checksum is not hexadecimal")?;
    if crc32fast::hash(json) != expected {
        return Err("the record's checksum does not match its contents".to_owned());
    }
    serde_json::from_slice(json).map_err(|e| format!("the record does not decode: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back() {
        let line = frame(&vec![1, 2, 3]).unwrap();
        assert_eq!(line.last(), Some(&b'\n'));
        let back: Vec<i32> = unframe(&line[..line.len() - 1]).unwrap();
        assert_eq!(back, [1, 2, 3]);
    }

    #[test]
    fn a_changed_byte_that_still_parses_is_caught() {
        let mut line = frame(&vec![1, 2, 3]).unwrap();
        let two = line.iter().position(|b| *b == b'2').unwrap();
        line[two] = b'7';
        let result: Result<Vec<i32>, _> = unframe(&line[..line.len() - 1]);
        assert!(result.unwrap_err().contains("checksum"));
    }

    #[test]
    fn garbage_is_refused() {
        assert!(unframe::<i32>(b"").is_err());
        assert!(unframe::<i32>(b"zzzzzzzz 1").is_err());
        assert!(unframe::<i32>(b"not a record at all").is_err());
    }
}
