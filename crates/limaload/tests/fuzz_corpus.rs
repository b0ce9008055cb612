//! Runs the fuzz target's body (`limaload::fuzz_one`) on stable over the seed corpus, the bad
//! corpus and mutations of them, so the property holds in CI without libFuzzer.

use std::path::Path;

fn inputs() -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for dir in [
        "tests/bad",
        "tests/fixtures/templates/_images",
        "../../fuzz/corpus/load",
    ] {
        if let Ok(entries) = std::fs::read_dir(root.join(dir)) {
            for e in entries.flatten() {
                if e.path().is_file() {
                    out.push(std::fs::read(e.path()).unwrap());
                }
            }
        }
    }
    assert!(out.len() > 20, "corpus missing");
    out
}

#[test]
fn fuzz_body_never_panics_on_the_corpus() {
    for input in inputs() {
        limaload::fuzz_one(&input);
    }
}

#[test]
fn fuzz_body_never_panics_on_mutations() {
    // Deterministic cheap mutations: truncations, byte flips, duplicated halves.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for input in inputs() {
        for _ in 0..20 {
            let mut m = input.clone();
            match next() % 4 {
                0 if !m.is_empty() => m.truncate((next() as usize) % m.len()),
                1 if !m.is_empty() => {
                    let i = (next() as usize) % m.len();
                    let specials = b"{}[]:-'\"\n #&*!|>%@`\t0";
                    m[i] = specials[(next() as usize) % specials.len()];
                }
                2 => {
                    let half = m[..m.len() / 2].to_vec();
                    m.extend_from_slice(&half);
                }
                _ => m.insert(0, b' '),
            }
            limaload::fuzz_one(&m);
        }
    }
}
