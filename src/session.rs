//! What the session looks like before pg_deploy touches it: the caller, the
//! server, the settings to come back to. Read from the backend's own state
//! (settings, user ids, pg_extension), without a query: a new session planned
//! one for every first call.

use crate::error::DeployError;
use crate::fingerprint::scan::{oid, Catalog};
use pgrx::datum::TimestampWithTimeZone;
use pgrx::pg_sys;
use std::ffi::{CStr, CString};

/// What the session looks like before pg_deploy touches it.
pub struct SessionFacts {
    pub server_version_num: i64,
    pub search_path: String,
    pub lock_timeout: String,
    /// Who called, taken before history is written as the extension's owner.
    pub current_user: String,
    pub session_user: String,
    pub extensions: Vec<String>,
    pub started_at: TimestampWithTimeZone,
}

pub fn session_facts() -> Result<SessionFacts, DeployError> {
    let version = setting("server_version_num")?;
    // SAFETY: GetCurrentTimestamp reads the clock (clock_timestamp()); the
    // user ids are backend globals.
    let (now, current, session) = unsafe {
        (
            pg_sys::GetCurrentTimestamp(),
            pg_sys::GetUserId(),
            pg_sys::GetSessionUserId(),
        )
    };
    Ok(SessionFacts {
        server_version_num: version
            .parse()
            .map_err(|_| DeployError::Internal(format!("server_version_num is \"{version}\"")))?,
        search_path: setting("search_path")?,
        lock_timeout: setting("lock_timeout")?,
        current_user: role_name(current),
        session_user: role_name(session),
        extensions: extension_names(),
        started_at: TimestampWithTimeZone::try_from(now)
            .map_err(|e| DeployError::Internal(format!("clock_timestamp(): {e}")))?,
    })
}

/// A setting as `current_setting(name)` shows it (with its unit).
fn setting(name: &str) -> Result<String, DeployError> {
    let c = CString::new(name).map_err(|_| DeployError::Internal(format!("setting {name}")))?;
    // SAFETY: a known setting's name; GetConfigOptionByName (what
    // current_setting calls) returns a palloc'd C string, or raises.
    let value = unsafe { pg_sys::GetConfigOptionByName(c.as_ptr(), std::ptr::null_mut(), false) };
    if value.is_null() {
        return Ok(String::new());
    }
    // SAFETY: non-NULL, a C string.
    Ok(unsafe { CStr::from_ptr(value) }.to_string_lossy().into_owned())
}

/// A role's name (empty for a role dropped meanwhile).
pub fn role_name(role: pg_sys::Oid) -> String {
    // SAFETY: with noerr, NULL for a missing role, else a palloc'd C string.
    let name = unsafe { pg_sys::GetUserNameFromId(role, true) };
    if name.is_null() {
        return String::new();
    }
    // SAFETY: non-NULL, a C string.
    unsafe { CStr::from_ptr(name) }.to_string_lossy().into_owned()
}

/// The names of the extensions installed in this database.
fn extension_names() -> Vec<String> {
    let catalog = Catalog::open(oid::PG_EXTENSION);
    let mut names = Vec::new();
    catalog.all_rows(|row| {
        if let Some(name) = row.text("extname") {
            names.push(String::from_utf8_lossy(&name).into_owned());
        }
    });
    catalog.close();
    names
}
