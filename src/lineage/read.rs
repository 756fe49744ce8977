//! The trigger's read of what a command touched, without SPI: the event
//! trigger's own lists (`pg_event_trigger_ddl_commands()`,
//! `pg_event_trigger_dropped_objects()`) are called through fmgr the way the
//! executor calls a set-returning function in materialize mode, and each
//! object's address parts come from `getObjectIdentityParts`, as
//! `pg_identify_object_as_address` reads them. A query did this before: its
//! executor start-up, and the jsonb it built and parsed back, were five sixths
//! of each firing's cost (docs/benchmarks.md). PostgreSQL makes the
//! command's catalog changes visible before ddl_command_end and sql_drop fire;
//! the catalog lookups here read them through the catalog snapshot.

use pgrx::pg_sys;
use pgrx::{FromDatum, PgMemoryContexts, PgTupleDesc};
use std::ffi::CStr;

/// One object a command touched, as a lineage row records it.
#[derive(Debug, Clone, Default)]
pub struct Touched {
    /// The command tag of this object's command, when the list has one.
    pub tag: Option<String>,
    pub object_type: Option<String>,
    pub schema_name: Option<String>,
    pub object_identity: Option<String>,
    /// `pg_identify_object_as_address`'s object_names and object_args.
    pub names: Option<Vec<String>>,
    pub args: Option<Vec<String>>,
}

/// The objects of the firing ddl_command_end, as `pg_event_trigger_ddl_commands()`
/// lists them, less those of extension scripts and temporary schemas.
pub fn ddl_commands() -> Result<Vec<Touched>, Unreadable> {
    const COLUMNS: [&str; 8] = [
        "classid",
        "objid",
        "objsubid",
        "command_tag",
        "object_type",
        "schema_name",
        "object_identity",
        "in_extension",
    ];
    collect_rows(pg_sys::F_PG_EVENT_TRIGGER_DDL_COMMANDS, &COLUMNS, |v| {
        let schema_name = text(v[5])?;
        if boolean(v[7]) == Some(true) || schema_name.as_deref() == Some("pg_temp") {
            return Ok(None);
        }
        let (names, args) = match (oid(v[0]), oid(v[1]), int4(v[2])) {
            (Some(class), Some(object), Some(sub)) => address_parts(class, object, sub)?,
            _ => (None, None),
        };
        Ok(Some(Touched {
            tag: text(v[3])?,
            object_type: text(v[4])?,
            schema_name,
            object_identity: text(v[6])?,
            names,
            args,
        }))
    })
}

/// The objects the firing sql_drop dropped (the command's own and those it
/// dropped by dependency), as `pg_event_trigger_dropped_objects()` lists them,
/// less temporary ones.
pub fn dropped_objects() -> Result<Vec<Touched>, Unreadable> {
    const COLUMNS: [&str; 8] = [
        "original",
        "normal",
        "is_temporary",
        "object_type",
        "schema_name",
        "object_identity",
        "address_names",
        "address_args",
    ];
    collect_rows(pg_sys::F_PG_EVENT_TRIGGER_DROPPED_OBJECTS, &COLUMNS, |v| {
        let listed = boolean(v[0]) == Some(true) || boolean(v[1]) == Some(true);
        if !listed || boolean(v[2]) != Some(false) {
            return Ok(None);
        }
        Ok(Some(Touched {
            tag: None,
            object_type: text(v[3])?,
            schema_name: text(v[4])?,
            object_identity: text(v[5])?,
            names: texts(v[6])?,
            args: texts(v[7])?,
        }))
    })
}

/// Text this database's encoding cannot give as an exact Rust string
/// (non-ASCII outside UTF-8): the firing is recorded as a gap.
#[derive(Debug, Clone, Copy)]
pub struct Unreadable;

impl Unreadable {
    pub fn reason(self) -> String {
        format!(
            "an object's name or identity is not ASCII, and this database's encoding is {}: \
             lineage records such names only in UTF-8 databases",
            crate::encoding::database_encoding()
        )
    }
}

/// The objects `read` makes of each row of `function` (None: left out), or
/// Unreadable at the first row that has text it cannot read.
fn collect_rows(
    function: u32,
    columns: &[&str],
    mut read: impl FnMut(&[Value]) -> Result<Option<Touched>, Unreadable>,
) -> Result<Vec<Touched>, Unreadable> {
    let mut touched = Vec::new();
    let mut failed = None;
    each_row(function, columns, |v| {
        if failed.is_none() {
            match read(v) {
                Ok(Some(t)) => touched.push(t),
                Ok(None) => {}
                Err(e) => failed = Some(e),
            }
        }
    });
    failed.map_or(Ok(touched), Err)
}

/// A column's value: None when NULL.
type Value = Option<pg_sys::Datum>;

/// Calls the set-returning function `function` (no arguments) in materialize
/// mode and hands `row` each row's values of `columns`, looked up by name. All
/// of it runs in a memory context of its own, deleted after: the list, the
/// tuplestore and the strings are palloc'd there, and `row` copies out what
/// it keeps.
fn each_row(function: u32, columns: &[&str], row: impl FnMut(&[Value])) {
    let mut context = PgMemoryContexts::new("pg_deploy lineage read");
    // SAFETY: nothing palloc'd in the context outlives the call (switch_to
    // deletes nothing; the context's drop does, after).
    unsafe { context.switch_to(|_| rows_of(function, columns, row)) };
}

fn rows_of(function: u32, columns: &[&str], mut row: impl FnMut(&[Value])) {
    // SAFETY: fmgr_info fills `flinfo` for a built-in function's oid; the
    // call info has no arguments, as the function takes none; the
    // ReturnSetInfo offers materialize mode with an expression context, as
    // InitMaterializedSRF requires, and the function (which checks that it
    // runs inside an event trigger) fills setResult and setDesc. The
    // tuplestore is read with a slot of its own descriptor; everything is
    // allocated in the current (own, short-lived) memory context.
    unsafe {
        let mut flinfo: pg_sys::FmgrInfo = std::mem::zeroed();
        pg_sys::fmgr_info(pg_sys::Oid::from(function), &mut flinfo);
        let mut result: pg_sys::ReturnSetInfo = std::mem::zeroed();
        result.type_ = pg_sys::NodeTag::T_ReturnSetInfo;
        result.econtext = pg_sys::CreateStandaloneExprContext();
        result.allowedModes = pg_sys::SetFunctionReturnMode::SFRM_Materialize as i32;
        result.returnMode = pg_sys::SetFunctionReturnMode::SFRM_ValuePerCall;
        let call = pg_sys::palloc0(std::mem::size_of::<pg_sys::FunctionCallInfoBaseData>()) as pg_sys::FunctionCallInfo;
        (*call).flinfo = &mut flinfo;
        (*call).resultinfo = (&mut result as *mut pg_sys::ReturnSetInfo).cast();
        (*call).fncollation = pg_sys::InvalidOid;
        (*call).nargs = 0;
        let Some(function) = flinfo.fn_addr else { return };
        function(call);
        if result.setResult.is_null() || result.setDesc.is_null() {
            return;
        }
        let desc = result.setDesc;
        let attributes = PgTupleDesc::from_pg_unchecked(desc);
        let index: Vec<Option<usize>> = columns
            .iter()
            .map(|name| {
                attributes
                    .iter()
                    .position(|a| CStr::from_ptr(a.attname.data.as_ptr()).to_bytes() == name.as_bytes())
            })
            .collect();
        let slot = pg_sys::MakeSingleTupleTableSlot(desc, &pg_sys::TTSOpsMinimalTuple);
        let mut values = vec![None; columns.len()];
        while pg_sys::tuplestore_gettupleslot(result.setResult, true, false, slot) {
            pg_sys::slot_getallattrs(slot);
            let datums = std::slice::from_raw_parts((*slot).tts_values, (*desc).natts as usize);
            let nulls = std::slice::from_raw_parts((*slot).tts_isnull, (*desc).natts as usize);
            for (value, at) in values.iter_mut().zip(&index) {
                *value = at.filter(|&i| !nulls[i]).map(|i| datums[i]);
            }
            row(&values);
        }
        pg_sys::ExecDropSingleTupleTableSlot(slot);
        pg_sys::tuplestore_end(result.setResult);
    }
}

/// An object's address names and args.
type Parts = (Option<Vec<String>>, Option<Vec<String>>);

/// `pg_identify_object_as_address(class, object, sub)`'s object_names and
/// object_args: both None when the object is not found, an empty list for none.
fn address_parts(class: pg_sys::Oid, object: pg_sys::Oid, sub: i32) -> Result<Parts, Unreadable> {
    let address = pg_sys::ObjectAddress {
        classId: class,
        objectId: object,
        objectSubId: sub,
    };
    let mut names: *mut pg_sys::List = std::ptr::null_mut();
    let mut args: *mut pg_sys::List = std::ptr::null_mut();
    // SAFETY: getObjectIdentityParts reads the catalogs for a valid address
    // pointer and, with missing_ok, returns NULL for an object that is gone;
    // the lists it fills hold palloc'd C strings (NIL is a null pointer).
    unsafe {
        if pg_sys::getObjectIdentityParts(&address, &mut names, &mut args, true).is_null() {
            return Ok((None, None));
        }
        Ok((Some(strings(names)?), Some(strings(args)?)))
    }
}

/// The C strings of a List (NIL is empty).
///
/// # Safety
/// `list` is NIL or a List of C strings.
unsafe fn strings(list: *mut pg_sys::List) -> Result<Vec<String>, Unreadable> {
    if list.is_null() {
        return Ok(Vec::new());
    }
    // SAFETY: a non-NIL List has `length` cells at `elements`, each a C string here.
    unsafe {
        std::slice::from_raw_parts((*list).elements, (*list).length as usize)
            .iter()
            .filter(|cell| !cell.ptr_value.is_null())
            .map(|cell| exact(CStr::from_ptr(cell.ptr_value.cast()).to_bytes().to_vec()))
            .collect()
    }
}

fn exact(bytes: Vec<u8>) -> Result<String, Unreadable> {
    crate::encoding::exact_string(bytes).ok_or(Unreadable)
}

fn text(value: Value) -> Result<Option<String>, Unreadable> {
    // SAFETY: the columns read with this are text.
    value
        .map(|d| exact(unsafe { crate::encoding::text_bytes(d) }))
        .transpose()
}

fn texts(value: Value) -> Result<Option<Vec<String>>, Unreadable> {
    let Some(datum) = value else { return Ok(None) };
    // SAFETY: the columns read with this are text[]: detoasted, then split
    // with text's storage (varlena, int-aligned) into `count` element datums
    // and null flags, palloc'd in this read's memory context.
    unsafe {
        let array = pg_sys::pg_detoast_datum(datum.cast_mut_ptr()).cast::<pg_sys::ArrayType>();
        let mut elements: *mut pg_sys::Datum = std::ptr::null_mut();
        let mut nulls: *mut bool = std::ptr::null_mut();
        let mut count: i32 = 0;
        pg_sys::deconstruct_array(
            array,
            pg_sys::TEXTOID,
            -1,
            false,
            b'i' as std::ffi::c_char,
            &mut elements,
            &mut nulls,
            &mut count,
        );
        if count <= 0 || elements.is_null() || nulls.is_null() {
            return Ok(Some(Vec::new()));
        }
        let elements = std::slice::from_raw_parts(elements, count as usize);
        let nulls = std::slice::from_raw_parts(nulls, count as usize);
        elements
            .iter()
            .zip(nulls)
            .filter(|(_, null)| !**null)
            .map(|(e, _)| exact(crate::encoding::text_bytes(*e)))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

fn oid(value: Value) -> Option<pg_sys::Oid> {
    // SAFETY: the columns read with this are oid.
    value.and_then(|d| unsafe { pg_sys::Oid::from_datum(d, false) })
}

fn int4(value: Value) -> Option<i32> {
    // SAFETY: the columns read with this are integer.
    value.and_then(|d| unsafe { i32::from_datum(d, false) })
}

fn boolean(value: Value) -> Option<bool> {
    // SAFETY: the columns read with this are boolean.
    value.and_then(|d| unsafe { bool::from_datum(d, false) })
}
