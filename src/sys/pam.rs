//! Linux-PAM, loaded when first used (dlopen of libpam.so.0), so the
//! server builds and runs without it where PAM is not configured. A login
//! runs `pam_authenticate`, then `pam_acct_mgmt` (and `pam_chauthtok` for
//! an expired password), with the conversation handed to the caller.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::Path;
use std::sync::OnceLock;

const PAM_SUCCESS: c_int = 0;
const PAM_PROMPT_ECHO_OFF: c_int = 1;
const PAM_PROMPT_ECHO_ON: c_int = 2;
const PAM_ERROR_MSG: c_int = 3;
const PAM_TEXT_INFO: c_int = 4;
const PAM_BUF_ERR: c_int = 5;
const PAM_CONV_ERR: c_int = 19;
const PAM_RHOST: c_int = 4;
const PAM_NEW_AUTHTOK_REQD: c_int = 12;
const PAM_CHANGE_EXPIRED_AUTHTOK: c_int = 0x20;
/// Failures that mean "wrong credentials" rather than a broken setup.
pub const PAM_AUTH_ERR: c_int = 7;
pub const PAM_USER_UNKNOWN: c_int = 10;
pub const PAM_MAXTRIES: c_int = 11;
pub const PAM_ACCT_EXPIRED: c_int = 13;
pub const PAM_PERM_DENIED: c_int = 6;

#[repr(C)]
struct Message {
    style: c_int,
    msg: *const c_char,
}

#[repr(C)]
struct Response {
    resp: *mut c_char,
    retcode: c_int,
}

type ConvFn =
    unsafe extern "C" fn(c_int, *mut *const Message, *mut *mut Response, *mut c_void) -> c_int;

#[repr(C)]
struct Conv {
    conv: ConvFn,
    appdata: *mut c_void,
}

type Handle = *mut c_void;

type StartFn =
    unsafe extern "C" fn(*const c_char, *const c_char, *const Conv, *mut Handle) -> c_int;
type StartConfdirFn = unsafe extern "C" fn(
    *const c_char,
    *const c_char,
    *const Conv,
    *const c_char,
    *mut Handle,
) -> c_int;
/// pam_authenticate, pam_acct_mgmt, pam_chauthtok, pam_end.
type StepFn = unsafe extern "C" fn(Handle, c_int) -> c_int;
type SetItemFn = unsafe extern "C" fn(Handle, c_int, *const c_void) -> c_int;
type StrerrorFn = unsafe extern "C" fn(Handle, c_int) -> *const c_char;

struct Lib {
    start: StartFn,
    start_confdir: Option<StartConfdirFn>,
    authenticate: StepFn,
    acct_mgmt: StepFn,
    chauthtok: StepFn,
    set_item: SetItemFn,
    end: StepFn,
    strerror: StrerrorFn,
}

// SAFETY: only function pointers into a library that is never unloaded.
unsafe impl Send for Lib {}
// SAFETY: as above; calling them is thread-safe per handle.
unsafe impl Sync for Lib {}

fn lib() -> Result<&'static Lib, String> {
    static LIB: OnceLock<Result<Lib, String>> = OnceLock::new();
    LIB.get_or_init(load).as_ref().map_err(Clone::clone)
}

fn load() -> Result<Lib, String> {
    // SAFETY: dlopen with a constant name; the handle is kept for good.
    let h = unsafe { libc::dlopen(c"libpam.so.0".as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
    if h.is_null() {
        return Err("libpam.so.0 could not be loaded (install libpam0g)".into());
    }
    let sym = |name: &CStr| {
        // SAFETY: dlsym on a live handle with a constant name.
        let p = unsafe { libc::dlsym(h, name.as_ptr()) };
        (!p.is_null()).then_some(p)
    };
    let need = |name: &CStr| sym(name).ok_or_else(|| format!("libpam has no {name:?}"));
    // SAFETY: each symbol is transmuted to the signature Linux-PAM's
    // <security/pam_appl.h> declares for it.
    unsafe {
        Ok(Lib {
            start: std::mem::transmute::<*mut c_void, StartFn>(need(c"pam_start")?),
            start_confdir: sym(c"pam_start_confdir")
                .map(|p| std::mem::transmute::<*mut c_void, StartConfdirFn>(p)),
            authenticate: std::mem::transmute::<*mut c_void, StepFn>(need(c"pam_authenticate")?),
            acct_mgmt: std::mem::transmute::<*mut c_void, StepFn>(need(c"pam_acct_mgmt")?),
            chauthtok: std::mem::transmute::<*mut c_void, StepFn>(need(c"pam_chauthtok")?),
            set_item: std::mem::transmute::<*mut c_void, SetItemFn>(need(c"pam_set_item")?),
            end: std::mem::transmute::<*mut c_void, StepFn>(need(c"pam_end")?),
            strerror: std::mem::transmute::<*mut c_void, StrerrorFn>(need(c"pam_strerror")?),
        })
    }
}

/// What a PAM module says to the user.
#[derive(Debug, PartialEq, Eq)]
pub enum Said<'a> {
    /// A question; `echo` if the answer may be shown.
    Prompt {
        text: &'a str,
        echo: bool,
    },
    Info(&'a str),
    Error(&'a str),
}

/// A failed PAM login: the step, the PAM code and its text.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {text}")]
pub struct Failure {
    pub step: &'static str,
    pub code: c_int,
    pub text: String,
}

/// The caller's side of the conversation: an answer to each prompt,
/// `None` to give up.
pub type Answer<'a> = dyn FnMut(Said<'_>) -> Option<String> + 'a;

/// Runs the login of `user` through `service` (from `confdir` instead of
/// /etc/pam.d when given), `rhost` the client's address.
pub fn login(
    service: &str,
    confdir: Option<&Path>,
    user: &str,
    rhost: &str,
    answer: &mut Answer<'_>,
) -> Result<(), Failure> {
    let fail = |step, code, text: &str| Failure {
        step,
        code,
        text: text.to_owned(),
    };
    let lib = lib().map_err(|e| fail("pam_start", PAM_BUF_ERR, &e))?;
    let cstr = |s: &str| {
        CString::new(s).map_err(|_| fail("pam_start", PAM_BUF_ERR, "a NUL byte in a name"))
    };
    let (service_c, user_c, rhost_c) = (cstr(service)?, cstr(user)?, cstr(rhost)?);
    let mut answer: &mut Answer<'_> = answer;
    let conv = Conv {
        conv: converse,
        appdata: (&mut answer as *mut &mut Answer<'_>).cast(),
    };
    let mut h: Handle = std::ptr::null_mut();
    let r = match (confdir, lib.start_confdir) {
        (Some(dir), Some(start_confdir)) => {
            let dir_c = cstr(&dir.to_string_lossy())?;
            // SAFETY: every pointer is to a live C string or to `conv`,
            // which outlives the handle (pam_end below).
            unsafe {
                start_confdir(
                    service_c.as_ptr(),
                    user_c.as_ptr(),
                    &conv,
                    dir_c.as_ptr(),
                    &mut h,
                )
            }
        }
        (Some(_), None) => {
            return Err(fail(
                "pam_start",
                PAM_BUF_ERR,
                "this libpam cannot read another directory (Linux-PAM 1.4 or later can)",
            ))
        }
        // SAFETY: as above.
        (None, _) => unsafe { (lib.start)(service_c.as_ptr(), user_c.as_ptr(), &conv, &mut h) },
    };
    if r != PAM_SUCCESS || h.is_null() {
        return Err(fail("pam_start", r, "could not start"));
    }
    let text = |code: c_int| {
        // SAFETY: pam_strerror returns a static string for any code.
        let p = unsafe { (lib.strerror)(h, code) };
        if p.is_null() {
            format!("PAM error {code}")
        } else {
            // SAFETY: non-null, NUL-terminated, static.
            unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
        }
    };
    let result = (|| {
        // SAFETY: a live handle and a C string that outlives the call
        // (libpam copies items).
        unsafe { (lib.set_item)(h, PAM_RHOST, rhost_c.as_ptr().cast()) };
        // SAFETY: a live handle.
        let r = unsafe { (lib.authenticate)(h, 0) };
        if r != PAM_SUCCESS {
            return Err(fail("pam_authenticate", r, &text(r)));
        }
        // SAFETY: a live handle.
        let mut r = unsafe { (lib.acct_mgmt)(h, 0) };
        if r == PAM_NEW_AUTHTOK_REQD {
            // SAFETY: a live handle; the conversation asks for the new one.
            r = unsafe { (lib.chauthtok)(h, PAM_CHANGE_EXPIRED_AUTHTOK) };
            if r != PAM_SUCCESS {
                return Err(fail("pam_chauthtok", r, &text(r)));
            }
        } else if r != PAM_SUCCESS {
            return Err(fail("pam_acct_mgmt", r, &text(r)));
        }
        Ok(())
    })();
    let status = result.as_ref().map_or_else(|f| f.code, |()| PAM_SUCCESS);
    // SAFETY: ends the handle started above; nothing uses it after.
    unsafe { (lib.end)(h, status) };
    result
}

/// The conversation function libpam calls: each message to the caller's
/// closure, the answers back in memory libpam frees.
unsafe extern "C" fn converse(
    n: c_int,
    msgs: *mut *const Message,
    resp: *mut *mut Response,
    appdata: *mut c_void,
) -> c_int {
    let Ok(count) = usize::try_from(n) else {
        return PAM_CONV_ERR;
    };
    if count == 0 || msgs.is_null() || resp.is_null() || appdata.is_null() {
        return PAM_CONV_ERR;
    }
    // SAFETY: calloc of `count` zeroed responses; libpam frees them.
    let out = unsafe { libc::calloc(count, size_of::<Response>()) }.cast::<Response>();
    if out.is_null() {
        return PAM_BUF_ERR;
    }
    // SAFETY: `appdata` is the `&mut &mut Answer` `login` passed, alive
    // for the whole of pam_authenticate/acct_mgmt/chauthtok.
    let answer = unsafe { &mut *appdata.cast::<&mut Answer<'_>>() };
    let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for i in 0..count {
            // SAFETY: Linux-PAM passes an array of `n` message pointers.
            let m = unsafe { &**msgs.add(i) };
            let text = if m.msg.is_null() {
                String::new()
            } else {
                // SAFETY: a NUL-terminated string of the module's.
                unsafe { CStr::from_ptr(m.msg) }
                    .to_string_lossy()
                    .into_owned()
            };
            let said = match m.style {
                PAM_PROMPT_ECHO_OFF => Said::Prompt {
                    text: &text,
                    echo: false,
                },
                PAM_PROMPT_ECHO_ON => Said::Prompt {
                    text: &text,
                    echo: true,
                },
                PAM_ERROR_MSG => Said::Error(&text),
                PAM_TEXT_INFO => Said::Info(&text),
                _ => return false,
            };
            let prompt = matches!(said, Said::Prompt { .. });
            match answer(said) {
                Some(a) if prompt => {
                    let Ok(c) = CString::new(a) else { return false };
                    // SAFETY: strdup of a live C string; libpam frees it.
                    let copy = unsafe { libc::strdup(c.as_ptr()) };
                    if copy.is_null() {
                        return false;
                    }
                    // SAFETY: `out` has `count` responses.
                    unsafe { (*out.add(i)).resp = copy };
                }
                Some(_) => {}
                None if prompt => return false,
                None => {}
            }
        }
        true
    }))
    .unwrap_or(false);
    if !ok {
        for i in 0..count {
            // SAFETY: each resp is null or from strdup; out from calloc.
            unsafe { libc::free((*out.add(i)).resp.cast()) };
        }
        // SAFETY: from calloc above.
        unsafe { libc::free(out.cast()) };
        return PAM_CONV_ERR;
    }
    // SAFETY: libpam gave us where to put the responses.
    unsafe { *resp = out };
    PAM_SUCCESS
}
