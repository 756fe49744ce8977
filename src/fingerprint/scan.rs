//! Catalog rows and PostgreSQL's own deparsing, without SPI: catalogs are
//! scanned through their indexes (`systable_beginscan`, the catalog
//! snapshot), columns are found by name in each catalog's descriptor, and
//! values print through their type's output function, as `concat_ws` prints
//! them. Texts stay bytes in the server's encoding until they are hashed.

use crate::encoding::text_bytes;
use pgrx::{pg_sys, PgTupleDesc};
use std::ffi::CStr;

/// The catalogs and indexes read here. Their OIDs are fixed by PostgreSQL's
/// catalog headers (genbki), the same on every major.
pub mod oid {
    pub const PG_TYPE: u32 = 1247;
    pub const PG_ATTRIBUTE: u32 = 1249;
    pub const PG_PROC: u32 = 1255;
    pub const PG_CLASS: u32 = 1259;
    pub const PG_SEQUENCE: u32 = 2224;
    pub const PG_AM: u32 = 2601;
    pub const PG_ATTRDEF: u32 = 2604;
    pub const PG_CONSTRAINT: u32 = 2606;
    pub const PG_NAMESPACE: u32 = 2615;
    pub const PG_OPCLASS: u32 = 2616;
    pub const PG_REWRITE: u32 = 2618;
    pub const PG_TRIGGER: u32 = 2620;
    pub const PG_POLICY: u32 = 3256;
    pub const PG_COLLATION: u32 = 3456;
    pub const PG_ENUM: u32 = 3501;
    pub const PG_RANGE: u32 = 3541;
    pub const PG_EXTENSION: u32 = 3079;
    pub const PG_DEPEND: u32 = 2608;
    pub const PG_PUBLICATION: u32 = 6104;
    pub const PG_PUBLICATION_REL: u32 = 6106;
    pub const PG_PUBLICATION_NAMESPACE: u32 = 6237;
    /// Indexes whose first column is the oid a scan looks for.
    pub const PG_AM_OID_INDEX: u32 = 2652;
    pub const PG_ATTRDEF_ADRELID_ADNUM_INDEX: u32 = 2656;
    pub const PG_ATTRIBUTE_RELID_ATTNUM_INDEX: u32 = 2659;
    pub const PG_CLASS_OID_INDEX: u32 = 2662;
    pub const PG_CONSTRAINT_CONRELID_CONTYPID_CONNAME_INDEX: u32 = 2665;
    pub const PG_CONSTRAINT_CONTYPID_INDEX: u32 = 2666;
    pub const PG_OPCLASS_OID_INDEX: u32 = 2687;
    pub const PG_REWRITE_REL_RULENAME_INDEX: u32 = 2693;
    pub const PG_TRIGGER_TGRELID_TGNAME_INDEX: u32 = 2701;
    pub const PG_COLLATION_OID_INDEX: u32 = 3085;
    pub const PG_POLICY_POLRELID_POLNAME_INDEX: u32 = 3258;
    pub const PG_ENUM_TYPID_SORTORDER_INDEX: u32 = 3534;
    pub const PG_RANGE_RNGTYPID_INDEX: u32 = 3542;
    pub const PG_SEQUENCE_SEQRELID_INDEX: u32 = 5002;
    pub const PG_REWRITE_OID_INDEX: u32 = 2692;
    /// On (refclassid, refobjid, refobjsubid).
    pub const PG_DEPEND_REFERENCE_INDEX: u32 = 2674;
    /// On (prrelid, prpubid).
    pub const PG_PUBLICATION_REL_PRRELID_PRPUBID_INDEX: u32 = 6113;
    /// On (pnnspid, pnpubid).
    pub const PG_PUBLICATION_NAMESPACE_PNNSPID_PNPUBID_INDEX: u32 = 6239;
}

/// An open catalog (AccessShareLock, as a query takes) and its column names.
pub struct Catalog {
    rel: pg_sys::Relation,
    columns: Vec<Vec<u8>>,
    /// Each column's type.
    types: Vec<pg_sys::Oid>,
}

impl Catalog {
    pub fn open(relid: u32) -> Catalog {
        // SAFETY: a catalog's fixed OID; table_open raises on failure. The
        // descriptor's attributes are read while the relation is open.
        unsafe {
            let rel = pg_sys::table_open(pg_sys::Oid::from(relid), pg_sys::AccessShareLock as i32);
            let desc = PgTupleDesc::from_pg_unchecked((*rel).rd_att);
            let columns = desc
                .iter()
                .map(|a| CStr::from_ptr(a.attname.data.as_ptr()).to_bytes().to_vec())
                .collect();
            let types = desc.iter().map(|a| a.atttypid).collect();
            Catalog { rel, columns, types }
        }
    }

    /// Keeps the lock until the transaction ends, as a query's would be.
    pub fn close(self) {
        // SAFETY: opened by `open`, closed once.
        unsafe { pg_sys::table_close(self.rel, pg_sys::NoLock as i32) };
    }

    /// `column` of the row whose oid is `key`, found through `index` (on oid);
    /// None when there is none.
    pub fn text_of(&self, index: u32, key: pg_sys::Oid, column: &str) -> Option<Vec<u8>> {
        let mut found = None;
        self.rows_of(index, "oid", key, |row| {
            if found.is_none() {
                found = row.text(column);
            }
        });
        found
    }

    /// Every row whose `column`, the first of index `index`, equals `key`, in index order.
    pub fn rows_of(&self, index: u32, column: &str, key: pg_sys::Oid, row: impl FnMut(&Row)) {
        self.rows_by(index, &[(column, key)], row);
    }

    /// Every row whose oid columns equal the keys, the first columns of
    /// index `index` in its order, in index order.
    pub fn rows_by(&self, index: u32, keys: &[(&str, pg_sys::Oid)], row: impl FnMut(&Row)) {
        let mut scan_keys: Vec<pg_sys::ScanKeyData> = keys.iter().map(|&(c, k)| self.oid_key(c, k)).collect();
        let count = scan_keys.len() as i32;
        self.scan(pg_sys::Oid::from(index), true, scan_keys.as_mut_ptr(), count, row);
    }

    /// Every row whose `column` equals `key`, by a scan of the whole catalog
    /// that tests the key before deforming a row.
    pub fn rows_where(&self, column: &str, key: pg_sys::Oid, row: impl FnMut(&Row)) {
        let mut scan_key = self.oid_key(column, key);
        self.scan(pg_sys::InvalidOid, false, &mut scan_key, 1, row);
    }

    /// `column = key` for an oid column.
    fn oid_key(&self, column: &str, key: pg_sys::Oid) -> pg_sys::ScanKeyData {
        let attno = (self.column(column) + 1) as i16;
        // SAFETY: zeroed is a valid ScanKeyData to initialise; the key is on
        // a heap attribute number (systable_beginscan maps it to the index's
        // column), compared with oideq.
        unsafe {
            let mut scan_key: pg_sys::ScanKeyData = std::mem::zeroed();
            pg_sys::ScanKeyInit(
                &mut scan_key,
                attno,
                pg_sys::BTEqualStrategyNumber as u16,
                pg_sys::Oid::from(pg_sys::F_OIDEQ),
                pg_sys::Datum::from(key),
            );
            scan_key
        }
    }

    /// Every row of the catalog.
    pub fn all_rows(&self, row: impl FnMut(&Row)) {
        self.scan(pg_sys::InvalidOid, false, std::ptr::null_mut(), 0, row);
    }

    fn scan(
        &self,
        index: pg_sys::Oid,
        use_index: bool,
        keys: *mut pg_sys::ScanKeyData,
        nkeys: i32,
        mut row: impl FnMut(&Row),
    ) {
        // SAFETY: a systable scan of an open catalog with the catalog
        // snapshot; each tuple is deformed into arrays sized to the
        // descriptor and handed to `row` before the next one is fetched.
        unsafe {
            let desc = (*self.rel).rd_att;
            let natts = (*desc).natts as usize;
            let mut values = vec![pg_sys::Datum::from(0usize); natts];
            let mut nulls = vec![true; natts];
            let scan = pg_sys::systable_beginscan(self.rel, index, use_index, std::ptr::null_mut(), nkeys, keys);
            loop {
                let tuple = pg_sys::systable_getnext(scan);
                if tuple.is_null() {
                    break;
                }
                pg_sys::heap_deform_tuple(tuple, desc, values.as_mut_ptr(), nulls.as_mut_ptr());
                row(&Row {
                    catalog: self,
                    values: &values,
                    nulls: &nulls,
                });
            }
            pg_sys::systable_endscan(scan);
        }
    }

    fn column(&self, name: &str) -> usize {
        match self.columns.iter().position(|c| c.as_slice() == name.as_bytes()) {
            Some(i) => i,
            // A catalog column every supported major has: only a bug gets here.
            None => pgrx::error!("pg_deploy fingerprint: catalog {:?} has no column \"{name}\"", self.rel),
        }
    }
}

/// One catalog row, valid during the scan's callback.
pub struct Row<'a> {
    catalog: &'a Catalog,
    values: &'a [pg_sys::Datum],
    nulls: &'a [bool],
}

impl Row<'_> {
    pub fn datum(&self, column: &str) -> Option<pg_sys::Datum> {
        let i = self.catalog.column(column);
        (!self.nulls[i]).then(|| self.values[i])
    }

    pub fn oid(&self, column: &str) -> pg_sys::Oid {
        self.datum(column)
            .map_or(pg_sys::InvalidOid, |d| pg_sys::Oid::from(d.value() as u32))
    }

    /// A one-byte column ("char", bool): its raw byte.
    pub fn byte(&self, column: &str) -> u8 {
        self.datum(column).map_or(0, |d| d.value() as u8)
    }

    pub fn int(&self, column: &str) -> i64 {
        self.datum(column).map_or(0, |d| d.value() as i64)
    }

    /// The value as its type's output function prints it; None for NULL.
    pub fn text(&self, column: &str) -> Option<Vec<u8>> {
        let i = self.catalog.column(column);
        if self.nulls[i] {
            return None;
        }
        // SAFETY: the column's type was read from the open catalog's
        // descriptor and the datum is of that type.
        Some(unsafe { output(self.values[i], self.catalog.types[i]) })
    }
}

/// `value` printed by the output function of `type_oid`.
///
/// # Safety
/// `value` is a valid datum of type `type_oid`.
pub unsafe fn output(value: pg_sys::Datum, type_oid: pg_sys::Oid) -> Vec<u8> {
    // SAFETY: per the contract; the output function returns a palloc'd C string.
    unsafe {
        let mut function = pg_sys::InvalidOid;
        let mut varlena = false;
        pg_sys::getTypeOutputInfo(type_oid, &mut function, &mut varlena);
        let text = pg_sys::OidOutputFunctionCall(function, value);
        CStr::from_ptr(text).to_bytes().to_vec()
    }
}

/// Calls the built-in SQL function `function` as a query would: NULL in,
/// NULL out for a strict one; None for a NULL result.
pub fn call(
    function: impl Into<pg_sys::Oid>,
    collation: impl Into<pg_sys::Oid>,
    args: &[Option<pg_sys::Datum>],
) -> Option<pg_sys::Datum> {
    let (function, collation) = (function.into(), collation.into());
    // SAFETY: fmgr_info fills `flinfo` for a built-in function; the call info
    // is sized for `args` (SizeForFunctionCallInfo) and zeroed, as fmgr's own
    // FunctionCallInvoke callers set it up; the callers pass the argument
    // types the function takes.
    unsafe {
        let mut flinfo: pg_sys::FmgrInfo = std::mem::zeroed();
        pg_sys::fmgr_info(function, &mut flinfo);
        if flinfo.fn_strict && args.iter().any(Option::is_none) {
            return None;
        }
        let size = std::mem::size_of::<pg_sys::FunctionCallInfoBaseData>()
            + args.len() * std::mem::size_of::<pg_sys::NullableDatum>();
        let call = pg_sys::palloc0(size) as pg_sys::FunctionCallInfo;
        (*call).flinfo = &mut flinfo;
        (*call).fncollation = collation;
        (*call).nargs = args.len() as i16;
        let slots = (*call).args.as_mut_slice(args.len());
        for (slot, arg) in slots.iter_mut().zip(args) {
            slot.value = arg.unwrap_or(pg_sys::Datum::from(0usize));
            slot.isnull = arg.is_none();
        }
        let function = flinfo.fn_addr?;
        let result = function(call);
        (!(*call).isnull).then_some(result)
    }
}

/// A built-in function returning text (or name), printed: None for NULL.
pub fn call_text(function: impl Into<pg_sys::Oid>, args: &[Option<pg_sys::Datum>]) -> Option<Vec<u8>> {
    call_text_collated(function, pg_sys::InvalidOid, args)
}

pub fn call_text_collated(
    function: impl Into<pg_sys::Oid>,
    collation: impl Into<pg_sys::Oid>,
    args: &[Option<pg_sys::Datum>],
) -> Option<Vec<u8>> {
    let result = call(function, collation, args)?;
    // SAFETY: the callers name functions that return text.
    Some(unsafe { text_bytes(result) })
}

/// A text datum holding `bytes` (server encoding), palloc'd.
pub fn text_datum(bytes: &[u8]) -> pg_sys::Datum {
    // SAFETY: cstring_to_text_with_len copies `len` bytes.
    unsafe {
        pg_sys::Datum::from(pg_sys::cstring_to_text_with_len(
            bytes.as_ptr().cast(),
            bytes.len() as i32,
        ))
    }
}

/// `pg_get_userbyid(role)`: the role's name, or "unknown (OID=n)".
pub fn role_name(role: pg_sys::Oid) -> Vec<u8> {
    let name = call(
        pg_sys::F_PG_GET_USERBYID,
        pg_sys::InvalidOid,
        &[Some(pg_sys::Datum::from(role))],
    );
    // SAFETY: pg_get_userbyid returns a palloc'd name, never NULL.
    name.map_or_else(Vec::new, |n| unsafe {
        CStr::from_ptr(n.cast_mut_ptr::<std::ffi::c_char>()).to_bytes().to_vec()
    })
}

/// `format_type(type, typmod)`; `typmod` None is SQL's NULL.
pub fn format_type(type_oid: pg_sys::Oid, typmod: Option<i32>) -> Option<Vec<u8>> {
    call_text(
        pg_sys::F_FORMAT_TYPE,
        &[Some(pg_sys::Datum::from(type_oid)), typmod.map(pg_sys::Datum::from)],
    )
}

/// A function of one oid returning text: pg_get_indexdef(oid) and the like.
pub fn deparse(function: impl Into<pg_sys::Oid>, object: pg_sys::Oid) -> Option<Vec<u8>> {
    call_text(function, &[Some(pg_sys::Datum::from(object))])
}

/// `pg_get_expr(expression, relation)`.
pub fn expression(tree: Option<pg_sys::Datum>, relation: pg_sys::Oid) -> Option<Vec<u8>> {
    call_text(
        pg_sys::F_PG_GET_EXPR_PG_NODE_TREE_OID,
        &[tree, Some(pg_sys::Datum::from(relation))],
    )
}

/// `concat_ws(separator, …)`: the parts that are not NULL, joined.
pub struct Joined {
    separator: u8,
    out: Vec<u8>,
    any: bool,
}

impl Joined {
    pub fn new(separator: u8) -> Joined {
        Joined {
            separator,
            out: Vec::new(),
            any: false,
        }
    }

    pub fn part(&mut self, part: Option<Vec<u8>>) -> &mut Joined {
        if let Some(part) = part {
            self.raw(&part);
        }
        self
    }

    pub fn raw(&mut self, part: &[u8]) -> &mut Joined {
        if self.any {
            self.out.push(self.separator);
        }
        self.out.extend_from_slice(part);
        self.any = true;
        self
    }

    pub fn done(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }
}

/// `string_agg(item, ',')`: None without items.
pub fn aggregated(items: Vec<Vec<u8>>) -> Option<Vec<u8>> {
    if items.is_empty() {
        return None;
    }
    let mut joined = Joined::new(b',');
    for item in &items {
        joined.raw(item);
    }
    Some(joined.done())
}
