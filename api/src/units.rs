//! Byte counts as people read them, the same in the agent's log, `flockerctl list` and the
//! isolator's log.

/// Binary units as people say them: `412 MiB`, `1.5 GiB`; tenths only from GiB up and below
/// 100, never `1.0 GiB`.
pub fn binary_size(bytes: u64) -> String {
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

/// How far a copy has come: `412 MiB of 1 GiB`, or `412 MiB` when the whole is not known. An
/// estimate the copy outgrew (a stream carries more than the data it moves) is the copy's size.
pub fn progress(done: u64, whole: Option<u64>) -> String {
    match whole {
        Some(whole) => format!("{} of {}", binary_size(done), binary_size(whole.max(done))),
        None => binary_size(done),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_say_them() {
        assert_eq!(binary_size(412 << 20), "412 MiB");
        assert_eq!(binary_size(1 << 30), "1 GiB");
        assert_eq!(binary_size(3 << 29), "1.5 GiB");
        assert_eq!(binary_size((412 << 20) + (300 << 10)), "412 MiB", "no tenths below GiB");
        assert_eq!(binary_size(10), "10 B");
        assert_eq!(binary_size(0), "0 B");
        assert_eq!(binary_size(2048), "2 KiB");
        assert_eq!(binary_size(150 << 30), "150 GiB", "no tenths from 100 up");
        assert_eq!(binary_size(3 << 49), "1.5 PiB");
        assert_eq!(binary_size(u64::MAX), "16384 PiB");
    }

    #[test]
    fn progress_says_of_what_when_it_is_known() {
        assert_eq!(progress(412 << 20, Some(1 << 30)), "412 MiB of 1 GiB");
        assert_eq!(progress(3 << 20, None), "3 MiB");
        assert_eq!(progress(115, Some(0)), "115 B of 115 B", "never more done than the whole");
    }
}
