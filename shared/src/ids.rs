//! Random identifiers (revisions, request and connection ids).

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `len` random bytes from the system RNG, in hex.
pub fn random_hex(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    // aws-lc's system RNG does not fail on supported platforms; the ids made
    // here are unique labels, not secrets.
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    hex(&bytes)
}
