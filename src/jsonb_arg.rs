//! A jsonb argument taken as its text. pgrx's `JsonB` turns the datum into a
//! serde value with `expect`, so a document nested past serde_json's limit
//! became a Rust panic with a backtrace in DETAIL. This type only asks
//! PostgreSQL for the text; `pg_deploy_core::argument` bounds the nesting and
//! parses it, and every failure is a pg_deploy error with a SQLSTATE.

use pgrx::callconv::{Arg, ArgAbi};
use pgrx::nullable::Nullable;
use pgrx::pgrx_sql_entity_graph::metadata::{ArgumentError, ReturnsError, ReturnsRef, SqlMappingRef, SqlTranslatable};
use pgrx::{pg_sys, FromDatum, IntoDatum};
use std::ffi::CStr;

/// The text of a jsonb argument, as `jsonb_out` writes it, and the argument
/// itself, valid for the call (stored as it came, without another copy).
pub struct JsonbText {
    pub text: String,
    pub datum: StoredJsonb,
}

/// A jsonb datum passed on to SPI as it is.
#[derive(Clone, Copy)]
pub struct StoredJsonb(pg_sys::Datum);

impl IntoDatum for StoredJsonb {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        Some(self.0)
    }

    fn type_oid() -> pg_sys::Oid {
        pg_sys::JSONBOID
    }
}

impl FromDatum for JsonbText {
    unsafe fn from_polymorphic_datum(datum: pg_sys::Datum, is_null: bool, _: pg_sys::Oid) -> Option<JsonbText> {
        if is_null {
            return None;
        }
        // SAFETY: the datum is a jsonb (the function's declared argument type);
        // jsonb_out returns a palloc'd C string, freed once copied.
        let text = unsafe {
            let out = pgrx::direct_function_call::<&CStr>(pg_sys::jsonb_out, &[Some(datum)])?;
            let text = out.to_string_lossy().into_owned();
            // A big manifest is not kept twice.
            pg_sys::pfree(out.as_ptr() as *mut std::ffi::c_void);
            text
        };
        Some(JsonbText {
            text,
            datum: StoredJsonb(datum),
        })
    }
}

// SAFETY: unboxed through FromDatum like pgrx's own argument types; a NULL
// argument only ever reaches `Option<JsonbText>`, through unbox_nullable_arg.
unsafe impl<'fcx> ArgAbi<'fcx> for JsonbText {
    unsafe fn unbox_arg_unchecked(arg: Arg<'_, 'fcx>) -> Self {
        // SAFETY: the caller guarantees a jsonb datum that is not NULL.
        unsafe { arg.unbox_arg_using_from_datum() }.unwrap_or_else(|| JsonbText {
            text: "null".into(),
            datum: StoredJsonb(pg_sys::Datum::from(0usize)),
        })
    }

    unsafe fn unbox_nullable_arg(arg: Arg<'_, 'fcx>) -> Nullable<Self> {
        // SAFETY: the caller guarantees a jsonb datum or NULL.
        unsafe { arg.unbox_arg_using_from_datum() }.into()
    }
}

// SAFETY: the SQL type is jsonb, which FromDatum above reads.
unsafe impl SqlTranslatable for JsonbText {
    const TYPE_IDENT: &'static str = pgrx::pgrx_resolved_type!(JsonbText);
    const TYPE_ORIGIN: pgrx::pgrx_sql_entity_graph::metadata::TypeOrigin =
        pgrx::pgrx_sql_entity_graph::metadata::TypeOrigin::External;
    const ARGUMENT_SQL: Result<SqlMappingRef, ArgumentError> = Ok(SqlMappingRef::literal("jsonb"));
    const RETURN_SQL: Result<ReturnsRef, ReturnsError> = Ok(ReturnsRef::One(SqlMappingRef::literal("jsonb")));
}
