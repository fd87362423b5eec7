//! The library's log records: to a callback the shim installs (so they land in the Mesos agent's
//! log through glog), or to stderr until it does.

use std::ffi::{CString, c_char, c_int, c_void};
use std::io::Write;
use std::sync::{Once, PoisonError, RwLock};

/// Receives log records: `level` 1 error, 2 warning, 3 info, 4 debug, 5 trace; `target` the
/// Rust module; both strings live only during the call. Called from any thread.
pub type flocker_log_callback = Option<
    unsafe extern "C" fn(
        ctx: *mut c_void,
        level: c_int,
        target: *const c_char,
        message: *const c_char,
    ),
>;

struct Sink {
    callback: unsafe extern "C" fn(*mut c_void, c_int, *const c_char, *const c_char),
    ctx: *mut c_void,
}

// SAFETY: `ctx` is the caller's and only handed back to its callback, which the header requires
// to be callable from any thread.
unsafe impl Send for Sink {}
// SAFETY: as above; the sink itself is never mutated while shared.
unsafe impl Sync for Sink {}

static SINK: RwLock<Option<Sink>> = RwLock::new(None);
static INSTALL: Once = Once::new();

/// Sends log records of `max_level` and more severe to `callback` (NULL: back to stderr).
#[unsafe(no_mangle)]
pub extern "C" fn flocker_set_log_callback(
    callback: flocker_log_callback,
    ctx: *mut c_void,
    max_level: c_int,
) {
    let _ = std::panic::catch_unwind(|| {
        install();
        log::set_max_level(level_filter(max_level));
        *SINK.write().unwrap_or_else(PoisonError::into_inner) =
            callback.map(|callback| Sink { callback, ctx });
    });
}

/// Makes this library's logger the process's `log` logger, once.
pub fn install() {
    INSTALL.call_once(|| {
        if log::set_logger(&LOGGER).is_ok() {
            log::set_max_level(log::LevelFilter::Info);
        }
    });
}

fn level_filter(level: c_int) -> log::LevelFilter {
    match level {
        i32::MIN..=0 => log::LevelFilter::Off,
        1 => log::LevelFilter::Error,
        2 => log::LevelFilter::Warn,
        3 => log::LevelFilter::Info,
        4 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    }
}

struct Logger;

static LOGGER: Logger = Logger;

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let sink = SINK.read().unwrap_or_else(PoisonError::into_inner);
        match &*sink {
            Some(sink) => {
                let text = |s: String| CString::new(s.replace('\0', " ")).unwrap_or_default();
                let (target, message) =
                    (text(record.target().to_owned()), text(record.args().to_string()));
                // SAFETY: the callback the caller installed, with its own `ctx`; both strings are
                // NUL-terminated and outlive the call.
                unsafe {
                    (sink.callback)(
                        sink.ctx,
                        record.level() as c_int,
                        target.as_ptr(),
                        message.as_ptr(),
                    )
                };
            }
            None => {
                let _ = writeln!(
                    std::io::stderr(),
                    "[flocker-isolator {} {}] {}",
                    record.level(),
                    record.target(),
                    record.args()
                );
            }
        }
    }

    fn flush(&self) {}
}
