//! Log lines that clients can make the service repeat at will (one per connection or per
//! handshake): each written at most once a second, saying how many were left out since, so
//! that a flood of connections cannot flood the log too.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A log line written at most once a second.
#[derive(Debug)]
pub struct Throttled {
    level: log::Level,
    throttle: Mutex<Throttle>,
}

impl Throttled {
    pub fn new(level: log::Level) -> Self {
        Self { level, throttle: Mutex::new(Throttle::new(Duration::from_secs(1))) }
    }

    /// Writes `message()` unless a line was written less than a second ago.
    pub fn log(&self, message: impl FnOnce() -> String) {
        let admitted =
            self.throttle.lock().unwrap_or_else(PoisonError::into_inner).admit(Instant::now());
        match admitted {
            None => {}
            Some(0) => log::log!(self.level, "{}", message()),
            Some(left_out) => {
                log::log!(self.level, "{} ({left_out} more like it left out)", message())
            }
        }
    }
}

/// Whether a line may be written now: the first at once, then one per `every` at most. Pure.
#[derive(Debug)]
struct Throttle {
    every: Duration,
    last: Option<Instant>,
    left_out: u64,
}

impl Throttle {
    fn new(every: Duration) -> Self {
        Self { every, last: None, left_out: 0 }
    }

    /// `Some(n)`: write it, saying `n` were left out since the last; `None`: leave it out.
    fn admit(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.every => {
                self.left_out += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.left_out))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttled_line_is_written_at_once_then_once_a_second_counting_what_was_left_out() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut throttle = Throttle::new(Duration::from_secs(1));
        assert_eq!(throttle.admit(at(0)), Some(0));
        assert_eq!(throttle.admit(at(10)), None);
        assert_eq!(throttle.admit(at(999)), None);
        assert_eq!(throttle.admit(at(1000)), Some(2));
        assert_eq!(throttle.admit(at(5000)), Some(0), "a quiet spell starts afresh");
    }
}
