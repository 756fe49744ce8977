//! What the session looks like before pg_deploy touches it: the caller, the
//! server, the settings to come back to.

use crate::error::DeployError;
use pgrx::datum::TimestampWithTimeZone;
use pgrx::spi::SpiClient;

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

pub fn session_facts(client: &mut SpiClient<'_>) -> Result<SessionFacts, DeployError> {
    let row = client
        .update(
            "SELECT pg_catalog.current_setting('server_version_num')::pg_catalog.int8,
                    pg_catalog.current_setting('search_path'),
                    ARRAY(SELECT extname::pg_catalog.text FROM pg_catalog.pg_extension),
                    pg_catalog.clock_timestamp(),
                    pg_catalog.current_setting('lock_timeout'),
                    current_user::pg_catalog.text, session_user::pg_catalog.text",
            Some(1),
            &[],
        )?
        .first();
    let missing = || DeployError::Internal("session facts query returned no row".into());
    Ok(SessionFacts {
        server_version_num: row.get::<i64>(1)?.ok_or_else(missing)?,
        search_path: row.get::<String>(2)?.unwrap_or_default(),
        extensions: row.get::<Vec<String>>(3)?.unwrap_or_default(),
        started_at: row.get::<TimestampWithTimeZone>(4)?.ok_or_else(missing)?,
        lock_timeout: row.get::<String>(5)?.unwrap_or_default(),
        current_user: row.get::<String>(6)?.unwrap_or_default(),
        session_user: row.get::<String>(7)?.unwrap_or_default(),
    })
}
