//! The timeline on stdout: each step as it completes, with the time since the demo started and
//! the step's own duration, then a few indented lines on what happened.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::demo::process;

/// `println!`, except that a closed stdout (`flockerctl demo | head`) is not a reason to stop
/// half-way: the demo carries on, cleans up, and its exit status still tells.
macro_rules! say {
    () => {
        $crate::demo::timeline::write_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::demo::timeline::write_line(format_args!($($arg)*))
    };
}
pub(crate) use say;

pub fn write_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// How many lines of a log a failure shows.
const TAIL_LINES: usize = 12;
/// Where a step's notes start: under its title.
const INDENT: &str = "                      ";
/// The width notes are wrapped to, indent included.
pub const WIDTH: usize = 110;

pub struct Timeline {
    started: Instant,
}

/// A log worth showing when a step fails.
pub struct Witness {
    /// What it is and where, for people.
    pub label: String,
    pub path: PathBuf,
}

impl Timeline {
    pub fn start() -> Self {
        Self { started: Instant::now() }
    }

    pub fn now(&self) -> Instant {
        Instant::now()
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn print_header(&self) {
        say!("   elapsed      took  step");
    }

    /// A step that started at `started` is done.
    pub fn done(&self, started: Instant, title: &str, notes: &[String]) {
        say!("{}  {title}", self.times(started));
        print_notes(notes);
    }

    /// Lines printed as they are under the last step (a table, which wrapping would break).
    pub fn verbatim(&self, text: &str) {
        for line in text.lines() {
            say!("{INDENT}  {line}");
        }
    }

    /// A step failed: its notes so far, why, and the end of the logs that may say more.
    pub fn failed(
        &self,
        started: Instant,
        title: &str,
        notes: &[String],
        error: &anyhow::Error,
        witnesses: &[Witness],
    ) {
        say!("{}  ✘ FAILED: {title}", self.times(started));
        print_notes(notes);
        print_wrapped(&format!("{error:#}"), "✘ ");
        for witness in witnesses {
            say!("{INDENT}last lines of {}:", witness.label);
            for line in process::tail(&witness.path, TAIL_LINES) {
                say!("{INDENT}  | {line}");
            }
        }
    }

    fn times(&self, started: Instant) -> String {
        let now = Instant::now();
        let elapsed = now.duration_since(self.started);
        let took = now.duration_since(started);
        format!("{:>7.1} ms  {:>5.1} ms", milliseconds(elapsed), milliseconds(took))
    }
}

fn print_notes(notes: &[String]) {
    for note in notes {
        print_wrapped(note, "· ");
    }
}

/// A note under a step's title, its first line after `bullet`, the others under its first.
fn print_wrapped(text: &str, bullet: &str) {
    let width = WIDTH - INDENT.len() - bullet.chars().count();
    for (i, line) in wrap(text, width).iter().enumerate() {
        let lead = if i == 0 { bullet.to_owned() } else { " ".repeat(bullet.chars().count()) };
        say!("{INDENT}{lead}{line}");
    }
}

/// `text` in lines of at most `width` characters, broken at spaces (a longer word, a path
/// say, gets a line of its own).
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    lines.push(line);
    lines
}

pub fn milliseconds(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_wraps_at_spaces_and_long_words_keep_a_line_of_their_own() {
        assert_eq!(wrap("a bb ccc", 4), ["a bb", "ccc"]);
        assert_eq!(wrap("a /a/long/path b", 4), ["a", "/a/long/path", "b"]);
        assert_eq!(wrap("", 4), [""]);
    }
}
