//! The extension's hints and warnings, said in the client's words: the extension names its
//! JSON options (it is called from psql too), but whoever ran `pg-deploy`
//! needs the flag that sets them.

/// Rewrites the option spellings the extension's hints use into pg-deploy
/// flags; hints without one come back as they are.
pub fn in_client_terms(hint: &str) -> String {
    const REWRITES: [(&str, &str); 5] = [
        (
            "accept_changed: nothing to accept",
            "--accept-changed: nothing to accept",
        ),
        (
            "options {\"accept_changed\": [ids], \"reason\": \"...\"}",
            "--accept-changed ID (once per change) and --reason TEXT",
        ),
        ("options {\"allow_downgrade\": true}", "--allow-downgrade"),
        (
            "{\"drift\": \"warn\"} or {\"drift\": \"ignore\"}",
            "--drift warn or --drift ignore",
        ),
        (
            "on the change (or in \"defaults\")",
            "on the change in the manifest (or for every change: --defaults '{\"allow\": [...]}')",
        ),
    ];
    let mut out = hint.to_string();
    for (from, to) in REWRITES {
        out = out.replace(from, to);
    }
    out
}

/// The hint for `permission denied` on pg_deploy's schema or functions: the
/// role has not been granted what docs/governance.md lists.
pub fn permission(code: &str, message: &str) -> Option<String> {
    let on_deploy = message.contains("schema deploy") || message.contains("function deploy.");
    (code == "42501" && on_deploy).then(|| {
        "This role has not been granted pg_deploy: the extension's owner grants USAGE ON SCHEMA deploy and \
         EXECUTE on the functions it needs, e.g. GRANT USAGE ON SCHEMA deploy TO ci_deployer; GRANT EXECUTE \
         ON FUNCTION deploy.apply(jsonb, jsonb), deploy.plan(jsonb, jsonb), deploy.status(text), \
         deploy.drift(text) TO ci_deployer; (docs/governance.md#least-privilege)."
            .to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_spellings_become_flags() {
        let cases = [
            (
                "Applied changes are immutable: put the fix in a new change, or accept the new text with \
                 options {\"accept_changed\": [ids], \"reason\": \"...\"} (recorded in the history).",
                "or accept the new text with --accept-changed ID (once per change) and --reason TEXT (recorded",
            ),
            (
                "Pass options {\"allow_downgrade\": true} to apply an older manifest on purpose.",
                "Pass --allow-downgrade to apply",
            ),
            (
                "undo it, or pass {\"drift\": \"warn\"} or {\"drift\": \"ignore\"}.",
                "or pass --drift warn or --drift ignore.",
            ),
            (
                "allow it with \"allow\": [\"rewrite\"] on the change (or in \"defaults\"); big tables",
                "\"allow\": [\"rewrite\"] on the change in the manifest (or for every change: --defaults",
            ),
            ("Name the index.", "Name the index."),
            (
                "accept_changed: nothing to accept for a",
                "--accept-changed: nothing to accept for a",
            ),
        ];
        for (hint, want) in cases {
            let got = in_client_terms(hint);
            assert!(got.contains(want), "{got}");
            assert!(
                !got.contains("accept_changed") && !got.contains("allow_downgrade"),
                "{got}"
            );
        }
    }

    #[test]
    fn permission_denied_on_deploy_names_the_grants() {
        let h = permission("42501", "permission denied for schema deploy").expect("hint");
        assert!(h.contains("GRANT USAGE ON SCHEMA deploy"), "{h}");
        assert!(h.contains("docs/governance.md"), "{h}");
        assert!(permission("42501", "permission denied for function deploy.apply").is_some());
        assert!(permission("42501", "permission denied for table shop.orders").is_none());
        assert!(permission("42P01", "schema deploy").is_none());
    }
}
