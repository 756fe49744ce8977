//! A jsonb argument, read into a serde value on demand. pgrx's `JsonB` turns
//! the datum into a serde value with `expect`, so a document nested past
//! serde_json's limit became a Rust panic with a backtrace in DETAIL; and
//! printing the document with `jsonb_out` to parse the text again was about a
//! tenth of a no-op apply of 1,000 changes. This type walks the jsonb with
//! PostgreSQL's own iterator instead, without recursion, and measures the
//! nesting as it goes; `deployment::argument` refuses a document nested past
//! `pg_deploy_core::argument::MAX_DEPTH`. Every failure is a pg_deploy error
//! with a SQLSTATE.

use pgrx::callconv::{Arg, ArgAbi};
use pgrx::nullable::Nullable;
use pgrx::pgrx_sql_entity_graph::metadata::{ArgumentError, ReturnsError, ReturnsRef, SqlMappingRef, SqlTranslatable};
use pgrx::{pg_sys, FromDatum, IntoDatum};
use serde_json::{Map, Value};
use std::ffi::CStr;

/// A jsonb argument, valid for the call (stored as it came, without another
/// copy), read into a serde value only when asked: a manifest is usually
/// read without one (`jsonb_manifest`).
pub struct JsonbArg {
    pub datum: StoredJsonb,
}

impl JsonbArg {
    /// The argument as a serde value (or why a number in it could not be
    /// one), and the deepest nesting of its arrays and objects.
    pub fn value(&self) -> (Result<Value, String>, usize) {
        // SAFETY: the datum is a jsonb (the function's declared argument type), valid for the call.
        unsafe { walk(self.datum.0) }
    }
}

/// A jsonb datum passed on to SPI as it is.
#[derive(Clone, Copy)]
pub struct StoredJsonb(pub(crate) pg_sys::Datum);

impl IntoDatum for StoredJsonb {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        Some(self.0)
    }

    fn type_oid() -> pg_sys::Oid {
        pg_sys::JSONBOID
    }
}

impl FromDatum for JsonbArg {
    unsafe fn from_polymorphic_datum(datum: pg_sys::Datum, is_null: bool, _: pg_sys::Oid) -> Option<JsonbArg> {
        if is_null {
            return None;
        }
        Some(JsonbArg {
            datum: StoredJsonb(datum),
        })
    }
}

/// A container being read: an array's elements, an object's members and the
/// key of the value to come, or the one value of a top-level scalar (which
/// jsonb keeps as a one-element "raw scalar" array).
enum Open {
    Array(Vec<Value>),
    Object(Map<String, Value>, String),
    Scalar(Value),
}

/// The document `datum` holds and the deepest nesting of its arrays and objects.
///
/// # Safety
/// `datum` is a jsonb datum, possibly toasted.
pub(crate) unsafe fn walk(datum: pg_sys::Datum) -> (Result<Value, String>, usize) {
    let (mut open, mut depth, mut deepest) = (Vec::<Open>::new(), 0usize, 0usize);
    let mut done: Option<Value> = None;
    // SAFETY: pg_detoast_datum returns the jsonb untoasted (a palloc'd copy
    // or the datum itself), whose root container the iterator reads; each
    // JsonbValue it fills is read by the type it says, strings by their length.
    unsafe {
        let jsonb = pg_sys::pg_detoast_datum(datum.cast_mut_ptr()).cast::<pg_sys::Jsonb>();
        let mut iterator = pg_sys::JsonbIteratorInit(&mut (*jsonb).root);
        let mut item: pg_sys::JsonbValue = std::mem::zeroed();
        loop {
            let token = pg_sys::JsonbIteratorNext(&mut iterator, &mut item, false);
            let value = match token {
                pg_sys::JsonbIteratorToken::WJB_DONE => break,
                pg_sys::JsonbIteratorToken::WJB_BEGIN_ARRAY if item.val.array.rawScalar => {
                    open.push(Open::Scalar(Value::Null));
                    continue;
                }
                pg_sys::JsonbIteratorToken::WJB_BEGIN_ARRAY | pg_sys::JsonbIteratorToken::WJB_BEGIN_OBJECT => {
                    depth += 1;
                    deepest = deepest.max(depth);
                    open.push(if token == pg_sys::JsonbIteratorToken::WJB_BEGIN_ARRAY {
                        Open::Array(Vec::with_capacity(item.val.array.nElems.max(0) as usize))
                    } else {
                        Open::Object(Map::new(), String::new())
                    });
                    continue;
                }
                pg_sys::JsonbIteratorToken::WJB_KEY => {
                    if let Some(Open::Object(_, key)) = open.last_mut() {
                        *key = string(&item);
                    }
                    continue;
                }
                pg_sys::JsonbIteratorToken::WJB_END_ARRAY | pg_sys::JsonbIteratorToken::WJB_END_OBJECT => {
                    match open.pop() {
                        Some(Open::Scalar(value)) => value,
                        Some(Open::Array(items)) => {
                            depth -= 1;
                            Value::Array(items)
                        }
                        Some(Open::Object(members, _)) => {
                            depth -= 1;
                            Value::Object(members)
                        }
                        None => continue,
                    }
                }
                _ => match scalar(&item) {
                    Ok(value) => value,
                    Err(e) => return (Err(e), deepest),
                },
            };
            match open.last_mut() {
                None => done = Some(value),
                Some(Open::Scalar(slot)) => *slot = value,
                Some(Open::Array(items)) => items.push(value),
                Some(Open::Object(members, key)) => {
                    members.insert(std::mem::take(key), value);
                }
            }
        }
    }
    (Ok(done.unwrap_or(Value::Null)), deepest)
}

/// A scalar as serde_json reads the text jsonb_out writes of it.
///
/// # Safety
/// `item` is a scalar the iterator returned.
unsafe fn scalar(item: &pg_sys::JsonbValue) -> Result<Value, String> {
    // SAFETY: the union is read as the variant `type_` names.
    unsafe {
        Ok(match item.type_ {
            pg_sys::jbvType::jbvString => Value::String(string(item)),
            pg_sys::jbvType::jbvBool => Value::Bool(item.val.boolean),
            pg_sys::jbvType::jbvNumeric => numeric(item.val.numeric)?,
            _ => Value::Null,
        })
    }
}

/// A jsonb number as serde_json reads the text jsonb_out writes of it
/// (numeric_out's), or why it cannot be one.
///
/// # Safety
/// `number` is a valid numeric.
pub(crate) unsafe fn numeric(number: pg_sys::Numeric) -> Result<Value, String> {
    // SAFETY: numeric_out reads a valid numeric and returns a C string.
    let text =
        unsafe { pgrx::direct_function_call::<&CStr>(pg_sys::numeric_out, &[Some(pg_sys::Datum::from(number))]) }
            .map(|t| t.to_string_lossy().into_owned())
            .unwrap_or_default();
    serde_json::from_str::<Value>(&text).map_err(|e| format!("number {text}: {e}"))
}

/// A string or key the iterator returned (not NUL-terminated: by its length).
///
/// # Safety
/// `item` is a jbvString.
unsafe fn string(item: &pg_sys::JsonbValue) -> String {
    // SAFETY: a jbvString's val.string holds `len` bytes at `val`.
    unsafe {
        let s = item.val.string;
        if s.val.is_null() || s.len <= 0 {
            return String::new();
        }
        String::from_utf8_lossy(std::slice::from_raw_parts(s.val.cast::<u8>(), s.len as usize)).into_owned()
    }
}

// SAFETY: unboxed through FromDatum like pgrx's own argument types; a NULL
// argument only ever reaches `Option<JsonbArg>`, through unbox_nullable_arg.
unsafe impl<'fcx> ArgAbi<'fcx> for JsonbArg {
    unsafe fn unbox_arg_unchecked(arg: Arg<'_, 'fcx>) -> Self {
        // SAFETY: the caller guarantees a jsonb datum that is not NULL.
        // A NULL never gets here (see unbox_nullable_arg), so the datum is never read.
        unsafe { arg.unbox_arg_using_from_datum() }.unwrap_or(JsonbArg {
            datum: StoredJsonb(pg_sys::Datum::from(0usize)),
        })
    }

    unsafe fn unbox_nullable_arg(arg: Arg<'_, 'fcx>) -> Nullable<Self> {
        // SAFETY: the caller guarantees a jsonb datum or NULL.
        unsafe { arg.unbox_arg_using_from_datum() }.into()
    }
}

// SAFETY: the SQL type is jsonb, which FromDatum above reads.
unsafe impl SqlTranslatable for JsonbArg {
    const TYPE_IDENT: &'static str = pgrx::pgrx_resolved_type!(JsonbArg);
    const TYPE_ORIGIN: pgrx::pgrx_sql_entity_graph::metadata::TypeOrigin =
        pgrx::pgrx_sql_entity_graph::metadata::TypeOrigin::External;
    const ARGUMENT_SQL: Result<SqlMappingRef, ArgumentError> = Ok(SqlMappingRef::literal("jsonb"));
    const RETURN_SQL: Result<ReturnsRef, ReturnsError> = Ok(ReturnsRef::One(SqlMappingRef::literal("jsonb")));
}
