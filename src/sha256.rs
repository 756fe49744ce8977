//! `deploy.sha256(bytea)`: the same bytes as `pg_catalog.sha256`, without
//! OpenSSL's digest machinery. PostgreSQL hashes through OpenSSL, and the
//! first digest in a backend fetches and sets up its implementation: about
//! half a millisecond of a new session's CPU (1.2 % of a first deployment on a
//! fresh database, by perf), which a fleet rollout pays once per database
//! (docs/benchmarks.md, Fleet). The statements a deployment runs on a 0.2.0
//! schema hash with this one.

use pgrx::pg_sys;
use pgrx::{FromDatum, IntoDatum};

/// The version-1 calling convention for `pg_deploy_sha256`.
#[no_mangle]
pub extern "C" fn pg_finfo_pg_deploy_sha256() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// `deploy.sha256(bytea) RETURNS bytea`, declared STRICT: never called with NULL.
///
/// # Safety
/// Called by PostgreSQL's function manager with a valid `fcinfo`.
#[pgrx::pg_guard]
#[no_mangle]
pub unsafe extern "C-unwind" fn pg_deploy_sha256(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: the function is STRICT with one bytea argument, so argument 0
    // is a bytea datum (possibly toasted: from_datum detoasts it), valid for
    // the call; the result is a palloc'd bytea.
    unsafe {
        let datum = pgrx::fcinfo::pg_getarg_datum_raw(fcinfo, 0);
        let bytes = <&[u8]>::from_polymorphic_datum(datum, false, pg_sys::BYTEAOID).unwrap_or_default();
        pg_deploy_core::checksum::sha256_bytes(bytes)
            .to_vec()
            .into_datum()
            .unwrap_or(pg_sys::Datum::from(0usize))
    }
}
