//! The completion callback: called exactly once per accepted call, from the isolator's thread.

use std::ffi::{CString, c_char, c_int, c_void};

/// Called once when a prepare, cleanup or recover is done: `ok` 1 with a JSON string (or NULL)
/// on success, `ok` 0 with an error message on failure. `ctx` is the caller's, untouched. The
/// string lives only during the call: copy it.
pub type flocker_done_callback =
    Option<unsafe extern "C" fn(ctx: *mut c_void, ok: c_int, json: *const c_char)>;

/// A pending answer. If it is dropped without being finished (a job lost to a bug), it still
/// answers, with a failure: the caller's future must never hang.
pub struct Reply {
    done: unsafe extern "C" fn(*mut c_void, c_int, *const c_char),
    ctx: *mut c_void,
    finished: bool,
}

// SAFETY: `ctx` is the caller's, never dereferenced here; the header tells callers that the
// callback, and with it `ctx`, is used from the isolator's threads.
unsafe impl Send for Reply {}

impl Reply {
    pub fn new(
        done: unsafe extern "C" fn(*mut c_void, c_int, *const c_char),
        ctx: *mut c_void,
    ) -> Self {
        Self { done, ctx, finished: false }
    }

    /// Reports the result: `Ok(json)` or `Err(message)`.
    pub fn finish(mut self, result: Result<Option<String>, String>) {
        self.call(result);
    }

    fn call(&mut self, result: Result<Option<String>, String>) {
        if self.finished {
            return;
        }
        self.finished = true;
        let (ok, text) = match result {
            Ok(json) => (1, json),
            Err(message) => (0, Some(message)),
        };
        let text = text.map(|t| CString::new(t.replace('\0', " ")).unwrap_or_default());
        let pointer = text.as_ref().map_or(std::ptr::null(), |t| t.as_ptr());
        // SAFETY: `done` is the caller's callback with the declared signature; `pointer` is NULL
        // or a NUL-terminated string that outlives the call (`text` is dropped after it).
        unsafe { (self.done)(self.ctx, ok, pointer) };
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        self.call(Err("internal error: the work was abandoned".to_owned()));
    }
}
