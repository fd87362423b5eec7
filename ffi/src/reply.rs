//! The completion callback: called exactly once per accepted call, from the isolator's thread.
//! Two shapes: the plain one (ok and a string) and the outcome (also the failure's cause and
//! the volumes), for callers that count what happened, as the Mesos shim's metrics do.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::sync::OnceLock;

use flocker_isolator_core::error::{CAUSES, IsolatorError, OTHER_CAUSE};

/// Called once when a prepare, cleanup or recover is done: `ok` 1 with a JSON string (or NULL)
/// on success, `ok` 0 with an error message on failure. `ctx` is the caller's, untouched. The
/// string lives only during the call: copy it.
pub type flocker_done_callback =
    Option<unsafe extern "C" fn(ctx: *mut c_void, ok: c_int, json: *const c_char)>;

/// What a call came to, in full. Lives only during the callback: copy what you keep.
#[repr(C)]
pub struct flocker_outcome {
    /// 1 on success, 0 on failure.
    pub ok: c_int,
    /// On success the JSON answer, or NULL; on failure the error message.
    pub text: *const c_char,
    /// On failure, why, as a stable short name: one of those `flocker_failure_cause` lists
    /// (static, never freed). NULL on success.
    pub cause: *const c_char,
    /// On success, how many Flocker volumes the container got (prepare) or let go (cleanup);
    /// 0 for a container that has none, for a recover, and on failure.
    pub volumes: u32,
}

/// Called once when a `*_with_outcome` call is done, with `ctx` untouched.
pub type flocker_outcome_callback =
    Option<unsafe extern "C" fn(ctx: *mut c_void, outcome: *const flocker_outcome)>;

/// The caller's callback, of either shape.
#[derive(Clone, Copy)]
pub enum Callback {
    Plain(unsafe extern "C" fn(*mut c_void, c_int, *const c_char)),
    Outcome(unsafe extern "C" fn(*mut c_void, *const flocker_outcome)),
}

/// A successful call's answer.
#[derive(Debug, Default)]
pub struct Answer {
    pub json: Option<String>,
    pub volumes: usize,
}

/// A failed call: its message, and its cause (one of [`CAUSES`]).
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub cause: &'static str,
}

impl Failure {
    /// A request the core never saw because it could not be read.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self { message: message.into(), cause: "invalid_request" }
    }

    /// Anything else: a bug, or work that was lost.
    pub fn other(message: impl Into<String>) -> Self {
        Self { message: message.into(), cause: OTHER_CAUSE }
    }
}

impl From<IsolatorError> for Failure {
    fn from(error: IsolatorError) -> Self {
        Self { message: flocker_isolator_core::control::error_chain(&error), cause: error.cause() }
    }
}

/// [`CAUSES`] as C strings that live as long as the library.
pub fn cause_names() -> &'static [CString] {
    static NAMES: OnceLock<Vec<CString>> = OnceLock::new();
    NAMES.get_or_init(|| CAUSES.iter().map(|name| c_string(name)).collect())
}

fn cause_name(cause: &str) -> &'static CStr {
    let names = cause_names();
    let index = CAUSES.iter().position(|name| *name == cause).unwrap_or(CAUSES.len() - 1);
    &names[index]
}

fn c_string(text: &str) -> CString {
    CString::new(text.replace('\0', " ")).unwrap_or_default()
}

/// A pending answer. If it is dropped without being finished (a job lost to a bug), it still
/// answers, with a failure: the caller's future must never hang.
pub struct Reply {
    done: Callback,
    ctx: *mut c_void,
    finished: bool,
}

// SAFETY: `ctx` is the caller's, never dereferenced here; the header tells callers that the
// callback, and with it `ctx`, is used from the isolator's threads.
unsafe impl Send for Reply {}

impl Reply {
    pub fn new(done: Callback, ctx: *mut c_void) -> Self {
        Self { done, ctx, finished: false }
    }

    /// Reports the result.
    pub fn finish(mut self, result: Result<Answer, Failure>) {
        self.call(result);
    }

    fn call(&mut self, result: Result<Answer, Failure>) {
        if self.finished {
            return;
        }
        self.finished = true;
        let (ok, owned, cause, volumes) = match result {
            Ok(answer) => (1, answer.json.map(|j| c_string(&j)), None, answer.volumes),
            Err(failure) => (0, Some(c_string(&failure.message)), Some(failure.cause), 0),
        };
        let text = owned.as_ref().map_or(std::ptr::null(), |t| t.as_ptr());
        match self.done {
            // SAFETY: `done` is the caller's callback with the declared signature; `text` is NULL
            // or a NUL-terminated string that outlives the call.
            Callback::Plain(done) => unsafe { done(self.ctx, ok, text) },
            Callback::Outcome(done) => {
                let outcome = flocker_outcome {
                    ok,
                    text,
                    cause: cause.map_or(std::ptr::null(), |c| cause_name(c).as_ptr()),
                    volumes: u32::try_from(volumes).unwrap_or(u32::MAX),
                };
                // SAFETY: as above; `outcome` and the strings it points at outlive the call.
                unsafe { done(self.ctx, &outcome) }
            }
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        self.call(Err(Failure::other("internal error: the work was abandoned")));
    }
}
