//! Which server text the extension can hold as Rust strings. Rust strings are
//! UTF-8 and pg_deploy passes them to PostgreSQL as they are, so non-ASCII
//! text is exact only in a UTF-8 (or SQL_ASCII, which stores bytes as sent)
//! database. Elsewhere (LATIN1, WIN1252, EUC_JP, ...) a manifest with
//! non-ASCII text is refused up front, instead of being read with
//! replacement characters and run as different SQL.

use crate::error::DeployError;
use pgrx::pg_sys;
use serde_json::Value;
use std::ffi::CStr;

/// Whether non-ASCII server text reads exactly as UTF-8 here.
pub fn utf8_database() -> bool {
    // SAFETY: reads the database encoding, a backend global set at connection.
    let encoding = unsafe { pg_sys::GetDatabaseEncoding() };
    encoding == pg_sys::pg_enc::PG_UTF8 as i32 || encoding == pg_sys::pg_enc::PG_SQL_ASCII as i32
}

/// The database encoding's name, e.g. "LATIN1".
pub fn database_encoding() -> String {
    // SAFETY: GetDatabaseEncodingName returns a static C string.
    unsafe { CStr::from_ptr(pg_sys::GetDatabaseEncodingName()) }
        .to_string_lossy()
        .into_owned()
}

/// Server-encoded bytes as a String, when they read exactly: in a UTF-8
/// database (or valid UTF-8 in SQL_ASCII), or ASCII anywhere.
pub fn exact_string(bytes: Vec<u8>) -> Option<String> {
    if bytes.is_ascii() || utf8_database() {
        String::from_utf8(bytes).ok()
    } else {
        None
    }
}

/// Refuses a manifest or options document with non-ASCII text in a database
/// whose text does not read as UTF-8. `argument` names it ("manifest", "options").
pub fn check_argument(argument: &'static str, doc: &Value) -> Result<(), DeployError> {
    if utf8_database() {
        return Ok(());
    }
    match pg_deploy_core::argument::first_non_ascii(doc, "$") {
        None => Ok(()),
        Some(path) => Err(DeployError::Encoding {
            argument,
            path,
            encoding: database_encoding(),
        }),
    }
}

/// A text (or other varlena string) datum's bytes, in the server encoding.
///
/// # Safety
/// `value` is a text (or other varlena string) datum.
pub unsafe fn text_bytes(value: pg_sys::Datum) -> Vec<u8> {
    // SAFETY: per the contract; text_to_cstring detoasts and copies.
    unsafe {
        let text = pg_sys::text_to_cstring(value.cast_mut_ptr());
        CStr::from_ptr(text).to_bytes().to_vec()
    }
}

/// Text returned as the server-encoded bytes it was read as: no round trip
/// through a Rust string, so names read exactly in any encoding.
pub struct ServerText(pub Vec<u8>);

impl pgrx::IntoDatum for ServerText {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        // SAFETY: cstring_to_text_with_len copies `len` bytes into a palloc'd text.
        Some(unsafe {
            pg_sys::Datum::from(pg_sys::cstring_to_text_with_len(
                self.0.as_ptr().cast(),
                self.0.len() as i32,
            ))
        })
    }

    fn type_oid() -> pg_sys::Oid {
        pg_sys::TEXTOID
    }
}

// SAFETY: returns the datum into_datum builds, a text.
unsafe impl pgrx::callconv::BoxRet for ServerText {
    unsafe fn box_into<'fcx>(self, fcinfo: &mut pgrx::callconv::FcInfo<'fcx>) -> pgrx::datum::Datum<'fcx> {
        match pgrx::IntoDatum::into_datum(self) {
            // SAFETY: a text datum, the function's declared result type.
            Some(datum) => unsafe { fcinfo.return_raw_datum(datum) },
            None => fcinfo.return_null(),
        }
    }
}

// SAFETY: the SQL type is text, which into_datum above builds.
unsafe impl pgrx::pgrx_sql_entity_graph::metadata::SqlTranslatable for ServerText {
    const TYPE_IDENT: &'static str = pgrx::pgrx_resolved_type!(ServerText);
    const TYPE_ORIGIN: pgrx::pgrx_sql_entity_graph::metadata::TypeOrigin =
        pgrx::pgrx_sql_entity_graph::metadata::TypeOrigin::External;
    const ARGUMENT_SQL: Result<
        pgrx::pgrx_sql_entity_graph::metadata::SqlMappingRef,
        pgrx::pgrx_sql_entity_graph::metadata::ArgumentError,
    > = Ok(pgrx::pgrx_sql_entity_graph::metadata::SqlMappingRef::literal("text"));
    const RETURN_SQL: Result<
        pgrx::pgrx_sql_entity_graph::metadata::ReturnsRef,
        pgrx::pgrx_sql_entity_graph::metadata::ReturnsError,
    > = Ok(pgrx::pgrx_sql_entity_graph::metadata::ReturnsRef::One(
        pgrx::pgrx_sql_entity_graph::metadata::SqlMappingRef::literal("text"),
    ));
}
