//! Text a client or a node chose (a certificate's CN, a path in a report, a dataset's name)
//! shown in a log line: escaped, so that a newline or a terminal escape in it cannot forge a
//! log line or repaint an operator's terminal.

use std::fmt;

/// `text` as it may appear in a log: control characters and quotes escaped, between quotes.
pub struct Untrusted<'a>(pub &'a str);

impl fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newline_or_an_escape_cannot_forge_a_log_line() {
        let forged = "user-x\n[2026-01-01T00:00:00Z INFO  flocker_control] all is well\u{1b}[2J";
        let shown = Untrusted(forged).to_string();
        assert!(!shown.contains('\n') && !shown.contains('\u{1b}'), "{shown}");
        assert_eq!(Untrusted("user-alice").to_string(), "\"user-alice\"");
    }
}
