//! What sealing costs per card key: `cargo run --release -p kami-store --example seal_cost`.
//! Prints the time per seal, open and keyed hash (import de-duplication) of a typical key,
//! and per key of a whole SQLite import (sealed) for scale.

use std::time::Instant;

use kami_store::sealed::{place, Keyring};

const N: usize = 200_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let ring = Keyring::generate()?;
    let aad = place("cards.secret", 42);
    let keys: Vec<String> = (0..N)
        .map(|i| format!("ABCD-EFGH-{i:08}-IJKL-MNOP"))
        .collect();

    let t = Instant::now();
    let sealed: Vec<Vec<u8>> = keys
        .iter()
        .map(|k| ring.seal(&aad, k.as_bytes()))
        .collect::<Result<_, _>>()?;
    let seal = t.elapsed();

    let t = Instant::now();
    let mut total = 0usize;
    for s in &sealed {
        total += ring.open(&aad, s)?.len();
    }
    let open = t.elapsed();

    let t = Instant::now();
    let mut h = 0u8;
    for k in &keys {
        h ^= ring.hash(&aad, k.as_bytes())[0];
    }
    let hash = t.elapsed();

    let per = |d: std::time::Duration| d.as_secs_f64() * 1e6 / N as f64;
    println!(
        "{N} keys of {} bytes (stored as {} bytes)",
        keys[0].len(),
        sealed[0].len()
    );
    println!("seal  (AES-256-GCM, random nonce): {:.3} µs/key", per(seal));
    println!("open:                              {:.3} µs/key", per(open));
    println!("keyed hash (HMAC-SHA256):          {:.3} µs/key", per(hash));
    println!(
        "import cost added per key (seal + hash): {:.3} µs; delivery per key (open): {:.3} µs",
        per(seal) + per(hash),
        per(open)
    );
    // Keep the optimiser honest.
    if total == 0 || h == 1 {
        println!("({total} {h})");
    }
    Ok(())
}
