#![no_main]
//! Amount parsing at the protocol edge: never panics, and anything accepted round-trips.

use kami_core::{Currency, Money};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    for c in Currency::ALL {
        if let Ok(m) = Money::from_major_str(s, c) {
            assert!(m.minor() >= 0);
            assert_eq!(Money::from_major_str(&m.to_major_string(), c), Ok(m));
        }
    }
});
