//! Loads `libflocker_isolator.so` at run time, as the Mesos agent's module loader does, and
//! drives it through its C ABI (`ffi/include/flocker_isolator.h`) with blocking calls.
//!
//! `flockerctl demo` uses it to play a Mesos agent: nothing here links the isolator's Rust code,
//! so what runs is exactly the built library a real agent would load.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::time::Duration;

/// `flocker_result`: what an export says about the call itself.
const FLOCKER_OK: c_int = 0;

/// The opaque `flocker_isolator` of the header.
#[repr(C)]
struct RawIsolator {
    _opaque: [u8; 0],
}

type DoneCallback = unsafe extern "C" fn(ctx: *mut c_void, ok: c_int, json: *const c_char);
type VersionFn = unsafe extern "C" fn() -> *const c_char;
type NewFn = unsafe extern "C" fn(*const c_char, *mut *mut RawIsolator, *mut *mut c_char) -> c_int;
type FreeFn = unsafe extern "C" fn(*mut RawIsolator);
type PrepareFn = unsafe extern "C" fn(
    *const RawIsolator,
    *const c_char,
    *const c_char,
    Option<DoneCallback>,
    *mut c_void,
) -> c_int;
type OneArgumentFn = unsafe extern "C" fn(
    *const RawIsolator,
    *const c_char,
    Option<DoneCallback>,
    *mut c_void,
) -> c_int;
type StringFreeFn = unsafe extern "C" fn(*mut c_char);
type LogCallback = unsafe extern "C" fn(*mut c_void, c_int, *const c_char, *const c_char);
type SetLogCallbackFn = unsafe extern "C" fn(Option<LogCallback>, *mut c_void, c_int);

/// What went wrong loading the library or making an isolator.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot load {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: libloading::Error,
    },
    #[error("{path} has no {symbol}: is it libflocker_isolator.so?")]
    Symbol {
        path: PathBuf,
        symbol: &'static str,
        #[source]
        source: libloading::Error,
    },
    #[error("the isolator refused its parameters: {0}")]
    Refused(String),
    #[error("a parameter string holds a NUL byte")]
    Nul(#[from] std::ffi::NulError),
    #[error("flocker_isolator_new returned {0}")]
    Rejected(c_int),
}

/// What went wrong with a prepare, cleanup or recover.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The isolator did the work and it failed: its message, as Mesos would log it.
    #[error("{0}")]
    Failed(String),
    #[error("{call} refused the call itself (flocker_result {code})")]
    Rejected { call: &'static str, code: c_int },
    #[error("{call} gave no answer within {0:?}", .wait)]
    NoAnswer { call: &'static str, wait: Duration },
    #[error("an argument holds a NUL byte")]
    Nul(#[from] std::ffi::NulError),
}

/// The loaded library: its exports, resolved once.
pub struct Library {
    version: VersionFn,
    new: NewFn,
    free: FreeFn,
    prepare: PrepareFn,
    cleanup: OneArgumentFn,
    recover: OneArgumentFn,
    string_free: StringFreeFn,
    set_log_callback: SetLogCallbackFn,
    /// Kept so the exports stay valid; the library is never unloaded (see `open`).
    _library: libloading::os::unix::Library,
}

impl Library {
    /// `dlopen`s the library. It stays loaded for the rest of the process, as in a Mesos agent:
    /// an isolator's threads may outlive its handle by a moment, and must find their code.
    pub fn open(path: &Path) -> Result<Self, LoadError> {
        use libloading::os::unix::{Library as Unix, RTLD_NOW};
        let flags = RTLD_NOW | libc::RTLD_NODELETE;
        // SAFETY: loading runs the library's initialisers; libflocker_isolator.so has no
        // initialiser with preconditions (Rust statics are lazy), and the path is the caller's.
        let library = unsafe { Unix::open(Some(path), flags) }
            .map_err(|source| LoadError::Open { path: path.to_owned(), source })?;
        let symbols = Symbols { library: &library, path };
        Ok(Self {
            version: symbols.get(b"flocker_isolator_version\0")?,
            new: symbols.get(b"flocker_isolator_new\0")?,
            free: symbols.get(b"flocker_isolator_free\0")?,
            prepare: symbols.get(b"flocker_isolator_prepare\0")?,
            cleanup: symbols.get(b"flocker_isolator_cleanup\0")?,
            recover: symbols.get(b"flocker_isolator_recover\0")?,
            string_free: symbols.get(b"flocker_string_free\0")?,
            set_log_callback: symbols.get(b"flocker_set_log_callback\0")?,
            _library: library,
        })
    }

    /// `flocker_isolator_version()`.
    pub fn version(&self) -> String {
        // SAFETY: the header promises a static NUL-terminated string.
        unsafe { CStr::from_ptr((self.version)()) }.to_string_lossy().into_owned()
    }

    /// Sends the library's log records of `max_level` and more severe to this process's `log`
    /// logger, under the target `isolator` (as the shim sends them to glog).
    pub fn forward_logs(&self, max_level: log::Level) {
        // SAFETY: `forward_log` may be called from any thread and ignores `ctx`.
        unsafe {
            (self.set_log_callback)(Some(forward_log), std::ptr::null_mut(), max_level as c_int)
        };
    }

    /// `flocker_isolator_new` with the module's parameters (a JSON object of strings), as the
    /// shim passes `modules.json`'s. Calls wait at most `wait` for their answer.
    pub fn isolator(
        &self,
        parameters_json: &str,
        wait: Duration,
    ) -> Result<Isolator<'_>, LoadError> {
        let parameters = CString::new(parameters_json)?;
        let mut handle = std::ptr::null_mut();
        let mut error = std::ptr::null_mut();
        // SAFETY: a NUL-terminated string and two out-pointers to local storage, as the header
        // asks; both outputs are read only as the result code says they were written.
        let code = unsafe { (self.new)(parameters.as_ptr(), &mut handle, &mut error) };
        match NonNull::new(handle) {
            Some(handle) if code == FLOCKER_OK => Ok(Isolator { library: self, handle, wait }),
            _ if !error.is_null() => Err(LoadError::Refused(self.take_string(error))),
            _ => Err(LoadError::Rejected(code)),
        }
    }

    /// Copies and frees a string the library handed out.
    fn take_string(&self, string: *mut c_char) -> String {
        // SAFETY: a NUL-terminated string from the library, freed once, right after the copy.
        let text = unsafe { CStr::from_ptr(string) }.to_string_lossy().into_owned();
        // SAFETY: as above: the library's string, not freed before.
        unsafe { (self.string_free)(string) };
        text
    }
}

struct Symbols<'a> {
    library: &'a libloading::os::unix::Library,
    path: &'a Path,
}

impl Symbols<'_> {
    fn get<T: Copy>(&self, name: &'static [u8]) -> Result<T, LoadError> {
        // SAFETY: each `T` is the function-pointer type the header declares for `name`; the
        // pointer is copied out and stays valid because the library is never unloaded.
        unsafe { self.library.get::<T>(name) }.map(|symbol| *symbol).map_err(|source| {
            let symbol = std::str::from_utf8(&name[..name.len() - 1]).unwrap_or("a symbol");
            LoadError::Symbol { path: self.path.to_owned(), symbol, source }
        })
    }
}

/// One isolator made by the library: what a Mesos agent holds after `create`.
pub struct Isolator<'lib> {
    library: &'lib Library,
    handle: NonNull<RawIsolator>,
    wait: Duration,
}

type Answer = Result<Option<String>, String>;

impl Isolator<'_> {
    /// `prepare(containerId, containerConfig)`, both JSON as the shim serialises them: the
    /// ContainerLaunchInfo as JSON, or `None` when there is nothing to launch with.
    pub fn prepare(&self, container_id: &str, config: &str) -> Result<Option<String>, CallError> {
        let (id, config) = (CString::new(container_id)?, CString::new(config)?);
        self.call("flocker_isolator_prepare", |done, ctx| {
            // SAFETY: a live handle, NUL-terminated strings that outlive the call, and a callback
            // that accepts `ctx` from any thread.
            unsafe {
                (self.library.prepare)(
                    self.handle.as_ptr(),
                    id.as_ptr(),
                    config.as_ptr(),
                    done,
                    ctx,
                )
            }
        })
    }

    /// `cleanup(containerId)`.
    pub fn cleanup(&self, container_id: &str) -> Result<(), CallError> {
        self.one_argument("flocker_isolator_cleanup", self.library.cleanup, container_id)
    }

    /// `recover(states, orphans)`, as `{"states": […], "orphans": […]}`.
    pub fn recover(&self, request: &str) -> Result<(), CallError> {
        self.one_argument("flocker_isolator_recover", self.library.recover, request)
    }

    fn one_argument(
        &self,
        call: &'static str,
        export: OneArgumentFn,
        json: &str,
    ) -> Result<(), CallError> {
        let json = CString::new(json)?;
        self.call(call, |done, ctx| {
            // SAFETY: as for prepare: a live handle, a string that outlives the call.
            unsafe { export(self.handle.as_ptr(), json.as_ptr(), done, ctx) }
        })
        .map(drop)
    }

    /// Starts a call with a one-shot channel as its context and waits for the callback.
    fn call(
        &self,
        name: &'static str,
        start: impl FnOnce(Option<DoneCallback>, *mut c_void) -> c_int,
    ) -> Result<Option<String>, CallError> {
        let (sender, receiver): (SyncSender<Answer>, Receiver<Answer>) = mpsc::sync_channel(1);
        let ctx = Box::into_raw(Box::new(sender)).cast::<c_void>();
        let code = start(Some(on_done), ctx);
        if code != FLOCKER_OK {
            // SAFETY: the call was refused, so the callback never runs: `ctx` is still ours.
            drop(unsafe { Box::from_raw(ctx.cast::<SyncSender<Answer>>()) });
            return Err(CallError::Rejected { call: name, code });
        }
        match receiver.recv_timeout(self.wait) {
            Ok(answer) => answer.map_err(CallError::Failed),
            Err(_) => Err(CallError::NoAnswer { call: name, wait: self.wait }),
        }
    }
}

impl Drop for Isolator<'_> {
    fn drop(&mut self) {
        // SAFETY: the handle came from flocker_isolator_new and is freed only here, once.
        unsafe { (self.library.free)(self.handle.as_ptr()) };
    }
}

// SAFETY: the header promises every export is thread-safe; the handle is only passed to them.
unsafe impl Send for Isolator<'_> {}
// SAFETY: as above.
unsafe impl Sync for Isolator<'_> {}

/// The completion callback: hands the answer to the waiting caller.
unsafe extern "C" fn on_done(ctx: *mut c_void, ok: c_int, json: *const c_char) {
    // SAFETY: `ctx` is the boxed sender `Isolator::call` leaked for this one call, and the
    // library calls back exactly once per accepted call.
    let sender = unsafe { Box::from_raw(ctx.cast::<SyncSender<Answer>>()) };
    let text = (!json.is_null()).then(|| {
        // SAFETY: a NUL-terminated string that lives during this call, as the header says.
        unsafe { CStr::from_ptr(json) }.to_string_lossy().into_owned()
    });
    // The caller may have stopped waiting (timed out): then nobody needs the answer.
    let _ = sender.send(if ok == 1 { Ok(text) } else { Err(text.unwrap_or_default()) });
}

/// The log callback: one record into the `log` facade.
unsafe extern "C" fn forward_log(
    _ctx: *mut c_void,
    level: c_int,
    _target: *const c_char,
    message: *const c_char,
) {
    let level = match level {
        1 => log::Level::Error,
        2 => log::Level::Warn,
        3 => log::Level::Info,
        4 => log::Level::Debug,
        _ => log::Level::Trace,
    };
    if !message.is_null() {
        // SAFETY: a NUL-terminated string that lives during this call, as the header says.
        let message = unsafe { CStr::from_ptr(message) }.to_string_lossy();
        log::log!(target: "isolator", level, "{message}");
    }
}
