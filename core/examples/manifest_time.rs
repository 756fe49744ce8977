// Times reading a manifest: cargo run --release -p pg_deploy_core --example manifest_time FILE
use std::time::Instant;

fn best<T>(mut f: impl FnMut() -> T) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..50 {
        let t = Instant::now();
        std::hint::black_box(f());
        best = best.min(t.elapsed().as_secs_f64());
    }
    best * 1e3
}

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: manifest_time FILE");
        std::process::exit(2);
    };
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let whole = best(|| pg_deploy_core::manifest::Manifest::from_value(&value).map(|m| m.changes.len()));
    let hash = best(|| pg_deploy_core::json::canonical_sha256(&value));
    println!("best of 50: from_value {whole:.3} ms, of which canonical_sha256 {hash:.3} ms");
}
