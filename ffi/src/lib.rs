//! `libflocker_isolator.so`: the C ABI of the isolator core, the contract the Mesos shim
//! (`cpp-shim/`) and the tests use. The header `include/flocker_isolator.h` is generated from
//! this file by cbindgen, and a test fails if the two ever differ.
//!
//! Every export returns at once: work runs on the core's own threads and reports exactly once
//! through a completion callback. No panic crosses the boundary; every export is thread-safe.
//! All of the project's `unsafe` is in this crate, each block with the reason it is sound.

#![allow(non_camel_case_types)]

mod logging;
mod reply;

use std::ffi::{CStr, CString, c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use flocker_isolator_core::Isolator;
use flocker_isolator_core::container::{ContainerId, recover_request};
use flocker_isolator_core::params::Parameters;
use flocker_isolator_core::pool::Pool;

pub use logging::{flocker_log_callback, flocker_set_log_callback};
use reply::{Answer, Callback, Failure, Reply};
pub use reply::{flocker_done_callback, flocker_outcome, flocker_outcome_callback};

/// What an export says about the call itself; what the work came to goes to the callback.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum flocker_result {
    /// Accepted: the callback will run exactly once.
    FLOCKER_OK = 0,
    /// A required pointer was NULL; the callback will not run.
    FLOCKER_NULL_PARAMETER = 1,
    /// A string was not UTF-8, or the parameters were refused; the callback will not run.
    FLOCKER_INVALID_ARGUMENT = 2,
    /// A bug: the call panicked and was stopped at the boundary; the callback will not run.
    FLOCKER_PANIC = 3,
}

/// An isolator: opaque to C. Made by `flocker_isolator_new`, freed by `flocker_isolator_free`.
pub struct flocker_isolator {
    isolator: Isolator,
    pool: Pool,
}

/// The version of this library, as a static NUL-terminated string (never freed).
#[unsafe(no_mangle)]
pub extern "C" fn flocker_isolator_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// Makes an isolator from the module's parameters, a JSON object of key/value strings.
///
/// On success stores the new isolator in `*isolator_out` and returns `FLOCKER_OK`. On failure
/// returns `FLOCKER_INVALID_ARGUMENT` and, if `error_out` is not NULL, stores a message there
/// (free it with `flocker_string_free`). Nothing is stored on other results.
///
/// # Safety
/// `parameters_json` is NULL or a NUL-terminated string; `isolator_out` is NULL or points at
/// storage for one pointer; so is `error_out`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn flocker_isolator_new(
    parameters_json: *const c_char,
    isolator_out: *mut *mut flocker_isolator,
    error_out: *mut *mut c_char,
) -> flocker_result {
    boundary(|| {
        logging::install();
        if isolator_out.is_null() {
            return flocker_result::FLOCKER_NULL_PARAMETER;
        }
        let Some(json) = text(parameters_json) else { return invalid_text(parameters_json) };
        match make(json) {
            Ok(isolator) => {
                let handle = Arc::into_raw(Arc::new(isolator)).cast_mut();
                // SAFETY: `isolator_out` is not NULL (checked above) and the caller promises it
                // points at writable storage for one pointer.
                unsafe { isolator_out.write(handle) };
                flocker_result::FLOCKER_OK
            }
            Err(message) => {
                log::error!("{message}");
                if !error_out.is_null() {
                    // SAFETY: not NULL; the caller promises writable storage for one pointer.
                    unsafe { error_out.write(owned_string(&message)) };
                }
                flocker_result::FLOCKER_INVALID_ARGUMENT
            }
        }
    })
}

fn make(parameters_json: &str) -> Result<flocker_isolator, String> {
    let parameters = Parameters::parse(parameters_json).map_err(|e| e.to_string())?;
    let workers = parameters.workers;
    let isolator = Isolator::new(parameters).map_err(|e| error_chain(&e))?;
    let pool =
        Pool::new(workers, "flocker-isolator").map_err(|e| format!("cannot start threads: {e}"))?;
    Ok(flocker_isolator { isolator, pool })
}

/// Frees an isolator. Work already started keeps it alive until it is done; its callbacks
/// still run. NULL is ignored; freeing twice is forbidden.
///
/// # Safety
/// `isolator` is NULL or came from `flocker_isolator_new` and was not freed before.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn flocker_isolator_free(isolator: *mut flocker_isolator) {
    boundary(|| {
        if !isolator.is_null() {
            // SAFETY: `isolator` came from `flocker_isolator_new` (Arc::into_raw) and, by the
            // caller's promise, is freed once: this drops the caller's reference.
            drop(unsafe { Arc::from_raw(isolator.cast_const()) });
        }
    })
}

/// Starts preparing a container: `container_id_json` is its ContainerID, `container_config_json`
/// its ContainerConfig, both as JSON with proto field names.
///
/// Unless it returns an error, `done` runs exactly once, on one of the isolator's threads, with
/// `ctx` untouched: `ok` 1 and the ContainerLaunchInfo as JSON (or NULL when there is nothing to
/// launch with), or `ok` 0 and an error message. The string lives only during the call. `ctx`
/// must be usable from another thread.
///
/// # Safety
/// `isolator` is NULL or a live isolator; the strings are NULL or NUL-terminated and valid for
/// the call; `done` may be called from another thread with `ctx`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn flocker_isolator_prepare(
    isolator: *const flocker_isolator,
    container_id_json: *const c_char,
    container_config_json: *const c_char,
    done: flocker_done_callback,
    ctx: *mut c_void,
) -> flocker_result {
    prepare(isolator, container_id_json, container_config_json, done.map(Callback::Plain), ctx)
}

/// As `flocker_isolator_prepare`, but `done` gets the whole outcome: also, on failure, its
/// cause, and on success how many volumes the container got (0: it asked for none).
///
/// # Safety
/// As for `flocker_isolator_prepare`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn flocker_isolator_prepare_with_outcome(
    isolator: *const flocker_isolator,
    container_id_json: *const c_char,
    container_config_json: *const c_char,
    done: flocker_outcome_callback,
    ctx: *mut c_void,
) -> flocker_result {
    prepare(isolator, container_id_json, container_config_json, done.map(Callback::Outcome), ctx)
}

fn prepare(
    isolator: *const flocker_isolator,
    container_id_json: *const c_char,
    container_config_json: *const c_char,
    done: Option<Callback>,
    ctx: *mut c_void,
) -> flocker_result {
    submit(isolator, &[container_id_json, container_config_json], done, ctx, |core, texts| {
        let id = container_id(texts[0])?;
        let config = json(texts[1], "the ContainerConfig")?;
        let prepared = core.isolator.prepare_counted(&id, &config)?;
        let json = prepared.launch.map(|l| serde_json::to_string(&l)).transpose();
        let json = json.map_err(|e| Failure::other(e.to_string()))?;
        Ok(Answer { json, volumes: prepared.volumes })
    })
}

/// Starts cleaning up after a container (`container_id_json`, a ContainerID as JSON). Unknown
/// containers succeed. `done` as for `flocker_isolator_prepare`, with a NULL string on success.
///
/// # Safety
/// As for `flocker_isolator_prepare`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn flocker_isolator_cleanup(
    isolator: *const flocker_isolator,
    container_id_json: *const c_char,
    done: flocker_done_callback,
    ctx: *mut c_void,
) -> flocker_result {
    cleanup(isolator, container_id_json, done.map(Callback::Plain), ctx)
}

/// As `flocker_isolator_cleanup`, but `done` gets the whole outcome: also, on failure, its
/// cause, and on success how many volumes the container let go (0: it had none here).
///
/// # Safety
/// As for `flocker_isolator_prepare`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn flocker_isolator_cleanup_with_outcome(
    isolator: *const flocker_isolator,
    container_id_json: *const c_char,
    done: flocker_outcome_callback,
    ctx: *mut c_void,
) -> flocker_result {
    cleanup(isolator, container_id_json, done.map(Callback::Outcome), ctx)
}

fn cleanup(
    isolator: *const flocker_isolator,
    container_id_json: *const c_char,
    done: Option<Callback>,
    ctx: *mut c_void,
) -> flocker_result {
    submit(isolator, &[container_id_json], done, ctx, |core, texts| {
        let volumes = core.isolator.cleanup(&container_id(texts[0])?)?;
        Ok(Answer { json: None, volumes })
    })
}

/// Starts recovering after an agent restart: `recover_json` is
/// `{"states": [ContainerState…], "orphans": [ContainerID…]}`. `done` as for
/// `flocker_isolator_cleanup`. A failure means the state directory is unusable.
///
/// # Safety
/// As for `flocker_isolator_prepare`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn flocker_isolator_recover(
    isolator: *const flocker_isolator,
    recover_json: *const c_char,
    done: flocker_done_callback,
    ctx: *mut c_void,
) -> flocker_result {
    recover(isolator, recover_json, done.map(Callback::Plain), ctx)
}

/// As `flocker_isolator_recover`, but `done` gets the whole outcome (a failure's cause).
///
/// # Safety
/// As for `flocker_isolator_prepare`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn flocker_isolator_recover_with_outcome(
    isolator: *const flocker_isolator,
    recover_json: *const c_char,
    done: flocker_outcome_callback,
    ctx: *mut c_void,
) -> flocker_result {
    recover(isolator, recover_json, done.map(Callback::Outcome), ctx)
}

fn recover(
    isolator: *const flocker_isolator,
    recover_json: *const c_char,
    done: Option<Callback>,
    ctx: *mut c_void,
) -> flocker_result {
    submit(isolator, &[recover_json], done, ctx, |core, texts| {
        let recover = json(texts[0], "the recover request")?;
        let (states, orphans) =
            recover_request(&recover).map_err(|e| Failure::invalid(e.to_string()))?;
        core.isolator.recover(&states, &orphans)?;
        Ok(Answer::default())
    })
}

/// The `index`th name a failure's cause can have (`flocker_outcome.cause`), from 0; NULL past
/// the last. The names are static and never freed; the last is "other" (a bug, or lost work).
/// The list is fixed for a given library version, so a caller can count by cause from the
/// start.
#[unsafe(no_mangle)]
pub extern "C" fn flocker_failure_cause(index: usize) -> *const c_char {
    boundary(|| reply::cause_names().get(index).map_or(std::ptr::null(), |name| name.as_ptr()))
}

/// Stores in `*count_out` how many distinct volumes this node's containers hold now: those
/// being prepared, in use, or kept after a failed cleanup. It comes from the isolator's
/// checkpoints, so it stays right across an agent restart. Reads memory, not the disk (at
/// worst it waits for a rare rewrite of the journal).
///
/// # Safety
/// `isolator` is NULL or a live isolator; `count_out` is NULL or points at storage for one
/// `uint64_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn flocker_isolator_volumes_in_use(
    isolator: *const flocker_isolator,
    count_out: *mut u64,
) -> flocker_result {
    boundary(|| {
        let Some(core) = shared(isolator) else { return flocker_result::FLOCKER_NULL_PARAMETER };
        if count_out.is_null() {
            return flocker_result::FLOCKER_NULL_PARAMETER;
        }
        let count = u64::try_from(core.isolator.volumes_in_use()).unwrap_or(u64::MAX);
        // SAFETY: not NULL (checked above); the caller promises storage for one uint64_t.
        unsafe { count_out.write(count) };
        flocker_result::FLOCKER_OK
    })
}

/// Frees a string this library handed out. NULL is ignored.
///
/// # Safety
/// `string` is NULL or a string this library handed out, not freed before.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn flocker_string_free(string: *mut c_char) {
    boundary(|| {
        if !string.is_null() {
            // SAFETY: every string this library hands out comes from CString::into_raw, and the
            // caller promises to free each once.
            drop(unsafe { CString::from_raw(string) });
        }
    })
}

/// Checks the pointers, reads the strings, and runs `work` on the pool with a reply that
/// reports exactly once.
fn submit(
    isolator: *const flocker_isolator,
    strings: &[*const c_char],
    done: Option<Callback>,
    ctx: *mut c_void,
    work: impl FnOnce(&flocker_isolator, &[&str]) -> Result<Answer, Failure> + Send + 'static,
) -> flocker_result {
    boundary(|| {
        let (Some(core), Some(done)) = (shared(isolator), done) else {
            return flocker_result::FLOCKER_NULL_PARAMETER;
        };
        let mut texts = Vec::with_capacity(strings.len());
        for pointer in strings {
            match text(*pointer) {
                Some(text) => texts.push(text.to_owned()),
                None => return invalid_text(*pointer),
            }
        }
        let reply = Reply::new(done, ctx);
        let job_core = core.clone();
        let accepted = core.pool.spawn(move || {
            let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
            let result =
                catch_unwind(AssertUnwindSafe(|| work(&job_core, &texts))).unwrap_or_else(|_| {
                    Err(Failure::other("internal error: the isolator panicked; see its log"))
                });
            reply.finish(result);
        });
        if accepted { flocker_result::FLOCKER_OK } else { flocker_result::FLOCKER_PANIC }
    })
}

/// A new reference to the isolator behind a handle, for work that may outlive the call.
fn shared(isolator: *const flocker_isolator) -> Option<Arc<flocker_isolator>> {
    if isolator.is_null() {
        return None;
    }
    // SAFETY: a non-NULL handle came from `flocker_isolator_new` (Arc::into_raw) and has not been
    // freed (the caller's promise), so the Arc is alive; this adds a reference of our own.
    unsafe { Arc::increment_strong_count(isolator) };
    // SAFETY: the reference just added is the one this Arc takes over.
    Some(unsafe { Arc::from_raw(isolator) })
}

/// A C string as UTF-8, if it is one; None for NULL.
fn text<'a>(pointer: *const c_char) -> Option<&'a str> {
    if pointer.is_null() {
        return None;
    }
    // SAFETY: not NULL, and the caller promises a NUL-terminated string that stays valid for
    // the call; we copy what we keep.
    unsafe { CStr::from_ptr(pointer) }.to_str().ok()
}

fn invalid_text(pointer: *const c_char) -> flocker_result {
    if pointer.is_null() {
        flocker_result::FLOCKER_NULL_PARAMETER
    } else {
        flocker_result::FLOCKER_INVALID_ARGUMENT
    }
}

fn json(text: &str, what: &str) -> Result<serde_json::Value, Failure> {
    serde_json::from_str(text).map_err(|e| Failure::invalid(format!("{what} is not JSON: {e}")))
}

fn container_id(text: &str) -> Result<ContainerId, Failure> {
    ContainerId::from_json(&json(text, "the ContainerID")?)
        .map_err(|e| Failure::invalid(e.to_string()))
}

/// A string for C, which frees it with `flocker_string_free`. NUL bytes cannot travel; they
/// become spaces.
fn owned_string(text: &str) -> *mut c_char {
    CString::new(text.replace('\0', " ")).unwrap_or_default().into_raw()
}

fn error_chain(error: &dyn std::error::Error) -> String {
    flocker_isolator_core::control::error_chain(error)
}

/// Runs an export's body, turning a panic into `FLOCKER_PANIC` (or the default) so that it never
/// unwinds into C — which would abort the Mesos agent.
fn boundary<T: Panicked>(body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|_| {
        log::error!("a call into the isolator panicked; it was stopped at the C boundary");
        T::panicked()
    })
}

/// What an export answers when its body panicked.
trait Panicked {
    fn panicked() -> Self;
}

impl Panicked for flocker_result {
    fn panicked() -> Self {
        flocker_result::FLOCKER_PANIC
    }
}

impl Panicked for () {
    fn panicked() -> Self {}
}

impl Panicked for *const c_char {
    fn panicked() -> Self {
        std::ptr::null()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::c_int;
    use std::sync::mpsc;

    extern "C" fn remember(ctx: *mut c_void, ok: c_int, json: *const c_char) {
        // SAFETY: the tests pass a Box<Sender> as `ctx`, for exactly one call.
        let sender = unsafe { Box::from_raw(ctx.cast::<mpsc::Sender<(c_int, Option<String>)>>()) };
        // SAFETY: NULL or a NUL-terminated string valid during the call.
        let text = (!json.is_null())
            .then(|| unsafe { CStr::from_ptr(json) }.to_string_lossy().into_owned());
        let _ = sender.send((ok, text));
    }

    fn context() -> (*mut c_void, mpsc::Receiver<(c_int, Option<String>)>) {
        let (sender, receiver) = mpsc::channel();
        (Box::into_raw(Box::new(sender)).cast(), receiver)
    }

    #[test]
    fn a_panic_stops_at_the_boundary() {
        assert_eq!(
            boundary(|| -> flocker_result { panic!("a bug") }),
            flocker_result::FLOCKER_PANIC
        );
    }

    #[test]
    fn a_reply_that_was_never_finished_still_answers_once() {
        let (ctx, answers) = context();
        drop(Reply::new(Callback::Plain(remember), ctx));
        let (ok, text) = answers.recv().unwrap();
        assert_eq!(ok, 0);
        assert!(text.unwrap().contains("abandoned"));
        assert!(answers.try_recv().is_err());
    }

    /// What an outcome callback saw: ok, text, cause, volumes.
    type Seen = (c_int, Option<String>, Option<String>, u32);

    fn owned(pointer: *const c_char) -> Option<String> {
        // SAFETY: NULL or a NUL-terminated string valid during the call.
        (!pointer.is_null())
            .then(|| unsafe { CStr::from_ptr(pointer) }.to_string_lossy().into_owned())
    }

    extern "C" fn remember_outcome(ctx: *mut c_void, outcome: *const flocker_outcome) {
        // SAFETY: the tests pass a Box<Sender> as `ctx`, for exactly one call.
        let sender = unsafe { Box::from_raw(ctx.cast::<mpsc::Sender<Seen>>()) };
        // SAFETY: the library passes a valid outcome, alive during the call.
        let outcome = unsafe { &*outcome };
        let _ =
            sender.send((outcome.ok, owned(outcome.text), owned(outcome.cause), outcome.volumes));
    }

    fn outcome_of(result: Result<Answer, Failure>) -> Seen {
        let (sender, receiver) = mpsc::channel::<Seen>();
        let ctx = Box::into_raw(Box::new(sender)).cast();
        Reply::new(Callback::Outcome(remember_outcome), ctx).finish(result);
        receiver.recv().unwrap()
    }

    #[test]
    fn an_outcome_carries_the_failure_cause_the_core_gave_or_the_volumes() {
        let error = flocker_isolator_core::error::IsolatorError::Identity("no hello".into());
        let (ok, text, cause, volumes) = outcome_of(Err(error.into()));
        assert_eq!((ok, cause.as_deref(), volumes), (0, Some("node_identity"), 0));
        assert!(text.unwrap().contains("no hello"));

        let answer = Answer { json: Some("{}".into()), volumes: 2 };
        assert_eq!(outcome_of(Ok(answer)), (1, Some("{}".into()), None, 2));

        let (sender, receiver) = mpsc::channel::<Seen>();
        drop(Reply::new(
            Callback::Outcome(remember_outcome),
            Box::into_raw(Box::new(sender)).cast(),
        ));
        assert_eq!(receiver.recv().unwrap().2.as_deref(), Some("other"), "abandoned work");
    }

    #[test]
    fn the_failure_causes_are_the_cores_in_order_then_null() {
        let mut names = Vec::new();
        while let Some(name) = owned(flocker_failure_cause(names.len())) {
            names.push(name);
        }
        assert_eq!(names, flocker_isolator_core::error::CAUSES);
        assert!(flocker_failure_cause(usize::MAX).is_null());
    }

    #[test]
    fn null_pointers_and_bad_parameters_are_refused_without_a_callback() {
        let (ctx, answers) = context();
        // SAFETY: NULL handle and strings are what is being tested; `remember` is never called.
        let result = unsafe {
            flocker_isolator_prepare(
                std::ptr::null(),
                std::ptr::null(),
                std::ptr::null(),
                Some(remember),
                ctx,
            )
        };
        assert_eq!(result, flocker_result::FLOCKER_NULL_PARAMETER);
        assert!(answers.try_recv().is_err());
        // SAFETY: reclaims the context the refused call did not take.
        drop(unsafe { Box::from_raw(ctx.cast::<mpsc::Sender<(c_int, Option<String>)>>()) });

        let parameters = CString::new(r#"{"ipaddress": "h", "bogus": "1"}"#).unwrap();
        let (mut isolator, mut error) = (std::ptr::null_mut(), std::ptr::null_mut());
        // SAFETY: valid string and out-pointers.
        let result =
            unsafe { flocker_isolator_new(parameters.as_ptr(), &mut isolator, &mut error) };
        assert_eq!(result, flocker_result::FLOCKER_INVALID_ARGUMENT);
        assert!(isolator.is_null());
        // SAFETY: `error` was handed out by the call above.
        let message = unsafe { CStr::from_ptr(error) }.to_string_lossy().into_owned();
        assert!(message.contains("bogus"), "{message}");
        // SAFETY: freed once.
        unsafe { flocker_string_free(error) };
    }
}
