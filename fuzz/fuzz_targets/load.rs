//! Fuzzes limaload's parse, embed, fill and validate of arbitrary bytes: it must never panic,
//! and a config it accepts must serialize and parse again.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    limaload::fuzz_one(data);
});
